#!/usr/bin/env bash
# Integration test of `make run` (deploy/local/run.sh) with the real
# binaries, mosquitto, docker-registry and runc: runs it twice on free
# ports with a temporary OAK_RUN_DIR. Each time it waits for the "ready"
# message, checks through the API that the demo instance is RUNNING and
# through runc that its container runs and prints its lines, then sends
# SIGINT and checks that nothing is left: no process of the run, no runc
# container under its runc root, no mount under the run directory, no
# cgroup of the worker. The second run must reuse the cluster, the worker
# and the demo application of the first (same ids, no duplicates).
# Usage: test/integration/local_run_test.sh [BUILD_DIR]
#   (default $OAK_BUILD_DIR, else build; run from anywhere, as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-${OAK_BUILD_DIR:-build}}
B=$(cd "$B" && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIPPED: local_run_test needs root (runc containers)"
  exit 0
fi
for t in mosquitto docker-registry runc umoci skopeo jq curl busybox ss python3; do
  if ! command -v "$t" >/dev/null; then
    echo "SKIPPED: local_run_test needs $t (make deps)"
    exit 0
  fi
done
for b in system-manager cluster-manager node-engine; do
  [ -x "$B/bin/$b" ] || { echo "FAIL: $B/bin/$b is missing"; exit 1; }
done

T=$(mktemp -d /tmp/oak-localrun-XXXXXX)
RUN=$T/run
RUNC_ROOT=$RUN/worker/runc
RPID=
N=0 # runs started
T0=$(date +%s)

# five ports nobody listens on (held together while chosen, so distinct)
read -r P_API P_GRPC P_CLUSTER P_MQTT P_REG < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
export OAK_RUN_DIR=$RUN OAK_API_PORT=$P_API OAK_GRPC_PORT=$P_GRPC OAK_CLUSTER_PORT=$P_CLUSTER
export OAK_MQTT_PORT=$P_MQTT OAK_REGISTRY_PORT=$P_REG OAK_NODE_NAME=lrt-$$ OAK_DEMO_TIMEOUT_S=40
API=http://127.0.0.1:$P_API

log() { printf '[%3ds] %s\n' "$(($(date +%s) - T0))" "$*"; }

dump() {
  echo "---- run.sh output (run $N) ----"
  cat "$T/out.$N" 2>/dev/null || true
  local f
  for f in "$RUN"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "---- $f (end) ----"
    tail -n 30 "$f"
  done
  echo "----"
}

fail() {
  echo "FAIL: $*"
  dump
  exit 1
}

# pids of the daemons of the run, from run.sh's pid files
daemon_pids() { cat "$RUN"/pids/*.pid 2>/dev/null | awk '{ print $1 }'; }

# processes whose command line or executable mentions the temp directory
# (the daemons, anything they started); matched in bash, so no helper
# process of this script carries the directory in its arguments
procs_of_run() {
  local p c e
  for p in /proc/[0-9]*; do
    c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    [ -n "$c" ] || continue # zombies and kernel threads
    e=$(readlink "$p/exe" 2>/dev/null) || e=
    if [[ "$c" == *"$T"* || "$e" == *"$T"* ]]; then echo "${p#/proc/} $c"; fi
  done
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then
    kill -INT "$RPID"
    for _ in $(seq 300); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$RPID" 2>/dev/null
  fi
  local p
  for p in $(daemon_pids); do kill -KILL "$p" 2>/dev/null; done
  if [ -d "$RUNC_ROOT" ]; then
    for c in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
      runc --root "$RUNC_ROOT" delete --force "$c" >/dev/null 2>&1
    done
  fi
  for m in $(awk -v r="$T/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  find /sys/fs/cgroup -maxdepth 8 -depth -type d -name "oak-$OAK_NODE_NAME" -exec rmdir {} + 2>/dev/null
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

# start_run: run.sh in the background, waits for "ready". A background
# command of a script starts with SIGINT ignored, and bash cannot trap a
# signal ignored on entry: python resets it to the default first.
start_run() {
  N=$((N + 1))
  python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' deploy/local/run.sh "$B" >"$T/out.$N" 2>&1 &
  RPID=$!
  for _ in $(seq 600); do
    grep -q "oak is ready" "$T/out.$N" && break
    kill -0 "$RPID" 2>/dev/null || fail "run.sh exited before it was ready"
    sleep 0.1
  done
  grep -q "oak is ready" "$T/out.$N" || fail "run.sh printed no 'ready' message within 60 s"
  grep -qF "$API/api" "$T/out.$N" || fail "the ready message does not name the API URL"
  grep -qF "$RUN/root/admin-password" "$T/out.$N" || fail "the ready message does not name the password file"
  log "run $N ready"
}

TOKEN=
api() { curl -sS --fail-with-body -m 10 -H "Authorization: Bearer $TOKEN" "$API$1"; }
login() {
  TOKEN=$(jq -cn --rawfile pw "$RUN/root/admin-password" '{username: "Admin", password: ($pw | rtrimstr("\n"))}' |
    curl -sS --fail-with-body -m 10 -X POST --data-binary @- "$API/api/auth/login" | jq -er .token) ||
    fail "cannot log in with the password in $RUN/root/admin-password"
}

# check_running: the demo is RUNNING at the root and its container runs;
# sets CLUSTER_ID APP_ID SERVICE_ID CONTAINER_PID
check_running() {
  login
  local clusters apps svc
  clusters=$(api /api/clusters/) || fail "GET /api/clusters/: $clusters"
  [ "$(jq length <<<"$clusters")" -eq 1 ] || fail "expected one cluster: $clusters"
  CLUSTER_ID=$(jq -r '.[0]._id' <<<"$clusters")
  apps=$(api /api/applications/) || fail "GET /api/applications/: $apps"
  [ "$(jq length <<<"$apps")" -eq 1 ] || fail "expected one application: $apps"
  [ "$(jq -r '.[0].application_name' <<<"$apps")" = demo ] || fail "the application is not demo: $apps"
  APP_ID=$(jq -r '.[0]._id' <<<"$apps")
  SERVICE_ID=$(jq -r '.[0].microservices[0]' <<<"$apps")
  svc=$(api "/api/service/$SERVICE_ID") || fail "GET /api/service/$SERVICE_ID: $svc"
  [ "$(jq '[.instance_list[] | select(.status == "RUNNING")] | length' <<<"$svc")" -eq 1 ] ||
    fail "the demo instance is not RUNNING: $(jq -c .instance_list <<<"$svc")"
  local list
  list=$(runc --root "$RUNC_ROOT" list -f json) || fail "runc list failed"
  [ "$(jq 'length' <<<"$list")" -eq 1 ] || fail "expected one container: $list"
  [ "$(jq -r '.[0].status' <<<"$list")" = running ] || fail "the container does not run: $list"
  jq -e --arg s "$SERVICE_ID" '.[0].id | startswith($s)' <<<"$list" >/dev/null ||
    fail "the container is not the demo's: $list"
  CONTAINER_PID=$(jq -r '.[0].pid' <<<"$list")
  kill -0 "$CONTAINER_PID" || fail "the container's init $CONTAINER_PID does not exist"
  local cid
  cid=$(jq -r '.[0].id' <<<"$list")
  for _ in $(seq 100); do
    grep -q "demo: tick" "$RUN/worker/containers/$cid/log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "demo: tick" "$RUN/worker/containers/$cid/log" || fail "the demo printed nothing"
  log "run $N: cluster $CLUSTER_ID, application $APP_ID, container $cid (pid $CONTAINER_PID) RUNNING"
}

# gone <pid>: the process has exited within 5 s (a zombie waiting for
# whichever reaper it was handed to counts as exited)
gone() {
  local s
  for _ in $(seq 50); do
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    s=${s##*) }
    [ "${s%% *}" != Z ] || return 0
    sleep 0.1
  done
  return 1
}

# stop_run: SIGINT, then nothing of the run may be left
stop_run() {
  local pids
  pids=$(daemon_pids)
  [ "$(wc -w <<<"$pids")" -eq 5 ] || fail "expected 5 daemon pid files, found: $pids"
  kill -INT "$RPID"
  local st=0
  for _ in $(seq 400); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$RPID" 2>/dev/null && fail "run.sh did not stop within 40 s of SIGINT"
  wait "$RPID" || st=$?
  RPID=
  [ "$st" -eq 130 ] || fail "run.sh exited with status $st after SIGINT (expected 130)"
  grep -q "oak: stopped" "$T/out.$N" || fail "run.sh did not say it stopped"
  local p left
  for p in $pids $CONTAINER_PID; do
    gone "$p" || fail "process $p is still running after the stop: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
  done
  left=$(procs_of_run)
  [ -z "$left" ] || fail "processes of the run are left: $left"
  left=$(runc --root "$RUNC_ROOT" list -q)
  [ -z "$left" ] || fail "runc containers are left: $left"
  left=$(awk -v r="$T/" 'index($2, r) == 1 { print $2 }' /proc/mounts)
  [ -z "$left" ] || fail "mounts are left: $left"
  left=$(find /sys/fs/cgroup -maxdepth 8 -type d -name "oak-$OAK_NODE_NAME" 2>/dev/null)
  [ -z "$left" ] || fail "cgroups are left: $left"
  left=$(ls "$RUN/pids")
  [ -z "$left" ] || fail "pid files are left: $left"
  # the daemons ran with the build's sanitizers (under make test): no report
  left=$(grep -l "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$RUN"/logs/*.log || true)
  [ -z "$left" ] || fail "sanitizer reports in $left"
  log "run $N stopped cleanly"
}

start_run
check_running
C1=$CLUSTER_ID A1=$APP_ID S1=$SERVICE_ID P1=$CONTAINER_PID
NODE1=$(jq -r .id "$RUN/worker/node.json")
grep -q "deploying the demo application" "$T/out.1" || fail "the first run did not deploy the demo"
stop_run

start_run
grep -q "deployed already" "$T/out.2" || fail "the second run did not find the demo application"
check_running
[ "$CLUSTER_ID" = "$C1" ] || fail "the second run has cluster $CLUSTER_ID, the first had $C1"
[ "$APP_ID" = "$A1" ] || fail "the second run has application $APP_ID, the first had $A1"
[ "$SERVICE_ID" = "$S1" ] || fail "the second run has service $SERVICE_ID, the first had $S1"
[ "$CONTAINER_PID" != "$P1" ] || fail "the container was not started again"
[ "$(jq -r .id "$RUN/worker/node.json")" = "$NODE1" ] || fail "the worker registered under a new id"
stop_run

log "ok: two runs, same cluster/application/worker, nothing left after each SIGINT"
