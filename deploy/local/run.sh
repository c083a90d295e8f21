#!/usr/bin/env bash
# Runs a complete single-machine oak installation in the foreground (what
# `make run` does after `make deps all`):
#   docker-registry  a local OCI registry holding the demo image (built
#                    offline from busybox-static by demo-image.sh)
#   system-manager   the root, on the embedded SQLite store
#   mosquitto        the cluster's broker, configured by
#                    `cluster-manager broker-config`
#   cluster-manager  one cluster ("local") joined to the root
#   node-engine      one worker running containers with runc
# then deploys the demo application (deploy/local/demo-app.json) through the
# REST API, waits until its instance is RUNNING and prints what to try next.
# Ctrl-C (or SIGTERM/SIGHUP) stops everything and removes the containers;
# a second run starts from the state the first one left.
#
# Usage: deploy/local/run.sh [BUILD_DIR] [--no-demo]      (as root)
#   BUILD_DIR  holds bin/ (default: build)
#   --no-demo  do not deploy the demo application
# Environment (all optional):
#   OAK_RUN_DIR         state, logs and configuration (default: run/ in the
#                       repository)
#   OAK_API_PORT        system-manager REST API (10000)
#   OAK_GRPC_PORT       system-manager gRPC port for clusters (50052)
#   OAK_CLUSTER_PORT    cluster-manager worker registration (10100)
#   OAK_MQTT_PORT       mosquitto (10003)
#   OAK_REGISTRY_PORT   docker-registry (10500)
#   OAK_BIND            address the daemons listen on (127.0.0.1)
#   OAK_CLUSTER_NAME    the cluster's name at the root (local)
#   OAK_NODE_NAME       the worker's name (local-worker)
#   OAK_DEMO_TIMEOUT_S  how long to wait for the demo to be RUNNING (90)
#   OAK_LOG_LEVEL       log level of every daemon (info)
# Every daemon logs to $OAK_RUN_DIR/logs/<name>.log; see docs/local-run.md.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

B=build
DEMO=1
for a in "$@"; do
  case "$a" in
    --no-demo) DEMO=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option $a (see --help)" >&2; exit 2 ;;
    *) B=$a ;;
  esac
done

CALLER_PWD=$PWD
REPO=$(cd "$(dirname "$0")/../.." && pwd)
if [ -d "$B" ]; then B=$(cd "$B" && pwd); elif [ -d "$REPO/$B" ]; then B=$(cd "$REPO/$B" && pwd); fi
cd "$REPO"
RUN=${OAK_RUN_DIR:-$REPO/run}
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)

API_PORT=${OAK_API_PORT:-10000}
GRPC_PORT=${OAK_GRPC_PORT:-50052}
CLUSTER_PORT=${OAK_CLUSTER_PORT:-10100}
MQTT_PORT=${OAK_MQTT_PORT:-10003}
REGISTRY_PORT=${OAK_REGISTRY_PORT:-10500}
BIND=${OAK_BIND:-127.0.0.1}
CLUSTER_NAME=${OAK_CLUSTER_NAME:-local}
NODE_NAME=${OAK_NODE_NAME:-local-worker}
DEMO_TIMEOUT_S=${OAK_DEMO_TIMEOUT_S:-90}
# the daemons are reached on the loopback address unless they listen elsewhere
HOST=127.0.0.1
case "$BIND" in 0.0.0.0 | :: | 127.0.0.1) ;; *) HOST=$BIND ;; esac

LOGS=$RUN/logs
PIDS=$RUN/pids
RUNC_ROOT=$RUN/worker/runc
DEMO_IMAGE=$HOST:$REGISTRY_PORT/oak/demo:1
API=http://$HOST:$API_PORT

say() { printf 'oak: %s\n' "$*"; }
err() { printf 'oak: error: %s\n' "$*" >&2; }
# a path as the caller would type it (relative to where run.sh was called)
show() { case "$1" in "$CALLER_PWD"/*) printf './%s' "${1#"$CALLER_PWD"/}" ;; *) printf '%s' "$1" ;; esac; }

# ---- checks before anything starts -------------------------------------

[ "$(id -u)" -eq 0 ] || { err "run as root (the node engine runs containers with runc): sudo make run"; exit 1; }
case "$RUN" in *[[:space:]]*) err "the run directory '$RUN' must not contain white space"; exit 1 ;; esac
for b in system-manager cluster-manager node-engine; do
  [ -x "$B/bin/$b" ] || { err "$B/bin/$b is missing: build first (make)"; exit 1; }
done
for t in mosquitto:mosquitto docker-registry:docker-registry runc:runc umoci:umoci skopeo:skopeo \
  jq:jq curl:curl busybox:busybox-static ss:iproute2 flock:util-linux setsid:util-linux openssl:openssl; do
  command -v "${t%%:*}" >/dev/null || { err "${t%%:*} is not installed (Debian package ${t#*:}; make deps)"; exit 1; }
done
for p in API_PORT GRPC_PORT CLUSTER_PORT MQTT_PORT REGISTRY_PORT; do
  v=${!p}
  [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -ge 1 ] && [ "$v" -le 65535 ] ||
    { err "OAK_$p must be a port number (1-65535), not '$v'"; exit 1; }
done

mkdir -p "$LOGS" "$PIDS" "$RUN/root" "$RUN/cluster" "$RUN/mqtt" "$RUN/worker" "$RUN/registry"
chmod 700 "$RUN/root" "$RUN/cluster" "$RUN/mqtt" "$RUN/worker"

# one run.sh per run directory; the daemons do not inherit the lock
exec 9>"$RUN/.lock"
if ! flock -n 9; then
  err "another run.sh is using $RUN (pid $(cat "$RUN/run.pid" 2>/dev/null || echo '?')); stop it first (Ctrl-C)"
  exit 1
fi
echo $$ >"$RUN/run.pid"

# ---- process bookkeeping -------------------------------------------------
# Every daemon runs in a session of its own (setsid), so a Ctrl-C in the
# terminal reaches only this script, which stops them in order. Its pid and
# executable are kept in $PIDS/<name>.pid so a later run can stop daemons a
# killed run.sh left behind.

declare -A PID=()
ORDER=() # names in start order

# pid_state <pid>: the process state letter, empty when there is none
pid_state() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  s=${s##*) }
  printf '%s' "${s%% *}"
}

# stop_pid <name> <pid> <grace seconds>: SIGTERM, SIGKILL after the grace
stop_pid() {
  local name=$1 pid=$2 grace=$3 i st
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    st=$(pid_state "$pid")
    if [ -z "$st" ] || [ "$st" = Z ]; then
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    sleep 0.1
  done
  say "$name (pid $pid) did not stop within ${grace}s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    st=$(pid_state "$pid")
    [ -z "$st" ] || [ "$st" = Z ] && return 0
    sleep 0.1
  done
}

# grace period per daemon when stopping it
grace_of() {
  case "$1" in
    node-engine) echo 30 ;; # waits for image pulls in progress
    *) echo 10 ;;
  esac
}

# start <name> <binary> [args...]: runs it with a clean environment plus
# the NAME=value words in the array ENV, output appended to its log
start() {
  local name=$1 bin=$2
  shift 2
  local log=$LOGS/$name.log
  printf '\n==== %s: starting %s\n' "$(date '+%F %T')" "$name" >>"$log"
  local keep=(PATH HOME LANG LC_ALL TZ TMPDIR OAK_LOG_LEVEL ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS)
  local envv=() k
  for k in "${keep[@]}"; do
    [ -n "${!k:-}" ] && envv+=("$k=${!k}")
  done
  env -i "${envv[@]}" "${ENV[@]}" setsid "$bin" "$@" </dev/null >>"$log" 2>&1 9>&- &
  PID[$name]=$!
  ORDER+=("$name")
  printf '%s %s\n' "$!" "$(readlink -f "$bin")" >"$PIDS/$name.pid"
}

# log_tail <name>: the end of a daemon's log, indented
log_tail() {
  echo "---- last lines of $(show "$LOGS/$1.log") ----" >&2
  tail -n 25 "$LOGS/$1.log" 2>/dev/null | sed 's/^/  | /' >&2
  echo "----" >&2
}

# alive <name>: the daemon still runs (reaps it if it exited)
alive() {
  local pid=${PID[$1]:-} st
  [ -n "$pid" ] || return 1
  st=$(pid_state "$pid")
  if [ -z "$st" ] || [ "$st" = Z ]; then
    wait "$pid" 2>/dev/null && RC=0 || RC=$?
    return 1
  fi
}

# wait_until <name> <what> <seconds> <command...>: polls the command until
# it succeeds; fails with the daemon's log when it dies or time runs out
wait_until() {
  local name=$1 what=$2 secs=$3 i
  shift 3
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" 2>/dev/null; then return 0; fi
    if ! alive "$name"; then
      err "$name exited during start-up (exit status $RC) before $what"
      log_tail "$name"
      exit 1
    fi
    sleep 0.1
  done
  err "$name: no $what within ${secs}s"
  log_tail "$name"
  exit 1
}

# log_has <name> <offset> <text>: the log, from byte offset on, contains text
log_has() { tail -c +"$(($2 + 1))" "$LOGS/$1.log" | grep -qF -- "$3"; }
log_size() { stat -c %s "$LOGS/$1.log" 2>/dev/null || echo 0; }
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# remove_containers: every runc container of the worker killed and
# deleted, every mount under the run directory unmounted. The node engine
# keeps the instances' desired state, so its next start runs them again.
remove_containers() {
  local ids id i left
  if [ -d "$RUNC_ROOT" ]; then
    ids=$(runc --root "$RUNC_ROOT" list -q 2>/dev/null || true)
    for id in $ids; do runc --root "$RUNC_ROOT" kill "$id" TERM 2>/dev/null || true; done
    for ((i = 0; i < 30; i++)); do # the demo exits at once on SIGTERM
      left=0
      for id in $ids; do
        runc --root "$RUNC_ROOT" state "$id" 2>/dev/null | grep -q '"status": "running"' && left=1
      done
      [ $left -eq 0 ] && break
      sleep 0.1
    done
    for id in $ids; do runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 || true; done
    [ -z "$ids" ] || say "removed $(wc -w <<<"$ids") container(s); the worker starts them again at the next run"
  fi
  local m
  for m in $(awk -v r="$RUN/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || err "cannot unmount $m"
  done
  # the (now empty) cgroup parent of the worker's containers, in every hierarchy
  find /sys/fs/cgroup -maxdepth 8 -depth -type d -name "oak-$NODE_NAME" -exec rmdir {} + 2>/dev/null || true
}

STOPPED=0
# stop_all: stops every daemon of this run in reverse dependency order
stop_all() {
  [ $STOPPED -eq 0 ] || return 0
  STOPPED=1
  trap '' INT TERM HUP # a second Ctrl-C must not interrupt the clean-up
  local n order=(node-engine cluster-manager mosquitto system-manager docker-registry)
  for n in "${order[@]}"; do
    if [ -n "${PID[$n]:-}" ]; then
      stop_pid "$n" "${PID[$n]}" "$(grace_of "$n")"
      rm -f "$PIDS/$n.pid"
    fi
    if [ "$n" = node-engine ]; then remove_containers; fi
  done
}

# stop_leftovers: daemons a run.sh that was killed left behind (found by
# their pid files, checked against the executable), and their containers
stop_leftovers() {
  local n f pid exe found=0
  for n in node-engine cluster-manager mosquitto system-manager docker-registry; do
    f=$PIDS/$n.pid
    [ -f "$f" ] || continue
    read -r pid exe <"$f" || true
    if [ -n "${pid:-}" ] && [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]; then
      [ $found -eq 1 ] || say "stopping what a previous run left running"
      found=1
      say "  $n (pid $pid)"
      stop_pid "$n" "$pid" "$(grace_of "$n")"
    fi
    rm -f "$f"
  done
  remove_containers
}

on_exit() {
  local rc=$?
  if [ $STOPPED -eq 0 ] && [ ${#ORDER[@]} -gt 0 ]; then
    say "stopping"
    stop_all
    say "stopped; state kept in $(show "$RUN") (rm -rf it to start afresh)"
  fi
  rm -f "$RUN/run.pid"
  exit $rc
}
trap on_exit EXIT
trap 'err "unexpected failure (line $LINENO: $BASH_COMMAND)"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

stop_leftovers

# ports: a clear message instead of a daemon failing to bind
for p in API_PORT:"system-manager REST API" GRPC_PORT:"system-manager gRPC" \
  CLUSTER_PORT:"cluster-manager worker registration" MQTT_PORT:"mosquitto" \
  REGISTRY_PORT:"docker-registry"; do
  var=${p%%:*}
  port=${!var}
  if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
    who=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n1 |
      sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/ by \1 (pid \2)/')
    err "port $port (OAK_$var, ${p#*:}) is already in use${who}; free it or set OAK_$var to a free port"
    exit 1
  fi
done
used=$(printf '%s\n' "$API_PORT" "$GRPC_PORT" "$CLUSTER_PORT" "$MQTT_PORT" "$REGISTRY_PORT" | sort | uniq -d | head -n1)
[ -z "$used" ] || { err "port $used is given to two daemons (OAK_*_PORT)"; exit 1; }

# secret <file>: prints the secret kept in file, creating it (0600) if needed
secret() {
  if [ ! -s "$1" ]; then (umask 077 && openssl rand -hex 16 >"$1.tmp" && mv "$1.tmp" "$1"); fi
  head -n1 "$1"
}

# ---- registry and the demo image ---------------------------------------

say "state in $(show "$RUN"), logs in $(show "$LOGS")/"
mkdir -p "$RUN/registry/data"
cat >"$RUN/registry/config.yml" <<EOF
# written by deploy/local/run.sh at every start
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RUN/registry/data
  delete:
    enabled: true
http:
  addr: $BIND:$REGISTRY_PORT
  secret: $(secret "$RUN/registry/http-secret")
EOF
ENV=()
start docker-registry "$(command -v docker-registry)" serve "$RUN/registry/config.yml"
wait_until docker-registry "listening on port $REGISTRY_PORT" 20 port_open "$REGISTRY_PORT"

# seeded with --no-demo too: an image to try things with
if ! curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$HOST:$REGISTRY_PORT/v2/oak/demo/manifests/1"; then
  say "building the demo image from busybox-static and pushing it to $DEMO_IMAGE"
  rm -rf "$RUN/image/demo" # rebuilt: a layout from an older demo-image.sh is not reused
  deploy/local/demo-image.sh "$RUN/image/demo" >"$LOGS/demo-image.log" 2>&1 ||
    { err "building the demo image failed"; tail -n 20 "$LOGS/demo-image.log" >&2; exit 1; }
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
    "oci:$RUN/image/demo:1" "docker://$DEMO_IMAGE" >>"$LOGS/demo-image.log" 2>&1 ||
    { err "pushing the demo image failed"; tail -n 20 "$LOGS/demo-image.log" >&2; exit 1; }
fi

# ---- root --------------------------------------------------------------

ENV=(OAK_STATE_DIR="$RUN/root" OAK_API_PORT="$API_PORT" OAK_GRPC_PORT="$GRPC_PORT" OAK_BIND="$BIND")
off=$(log_size system-manager)
start system-manager "$B/bin/system-manager"
wait_until system-manager "'listening' line" 30 log_has system-manager "$off" "system-manager listening"
[ -s "$RUN/root/admin-password" ] || { err "$RUN/root/admin-password is missing"; exit 1; }

# api <method> <path> [body]: an authenticated API call; prints the body,
# fails on an HTTP error
TOKEN=
api() {
  local body=()
  [ $# -lt 3 ] || body=(--data-binary "$3")
  curl -sS --fail-with-body -m 10 -X "$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' "${body[@]}" "$API$2"
}
login_body=$(jq -cn --rawfile pw "$RUN/root/admin-password" '{username: "Admin", password: ($pw | rtrimstr("\n"))}')
TOKEN=$(curl -sS --fail-with-body -m 10 -X POST "$API/api/auth/login" --data-binary "$login_body" | jq -er .token) ||
  { err "cannot log in as Admin with the password in $RUN/root/admin-password"; log_tail system-manager; exit 1; }

# the cluster join token (the cluster joins with it at every start and
# reconnect): kept with its expiry and name, renewed a week before it expires
jt=$RUN/cluster/join-token
jt_exp=$(sed -n 2p "$jt" 2>/dev/null | cut -d. -f1) || true
[[ "$jt_exp" =~ ^[0-9]+$ ]] || jt_exp=0
if [ -z "$(sed -n 1p "$jt" 2>/dev/null)" ] || [ "$jt_exp" -lt $(($(date +%s) + 7 * 86400)) ] ||
  [ "$(sed -n 3p "$jt")" != "$CLUSTER_NAME" ]; then
  reply=$(api POST /api/clusters/token "$(jq -cn --arg n "$CLUSTER_NAME" '{cluster_name: $n, ttl_s: 31536000}')") ||
    { err "cannot get a cluster join token: $reply"; exit 1; }
  (umask 077 && jq -r '.token, .expires_at, .cluster_name' <<<"$reply" >"$jt.tmp" && mv "$jt.tmp" "$jt")
fi
JOIN_TOKEN=$(sed -n 1p "$jt")

# ---- cluster: mosquitto + cluster-manager --------------------------------

MQTT_PW=$(secret "$RUN/mqtt/admin-password")
OAK_MQTT_ADMIN_PASSWORD=$MQTT_PW "$B/bin/cluster-manager" broker-config "$RUN/mqtt" "$MQTT_PORT" "$BIND" \
  >/dev/null 2>>"$LOGS/mosquitto.log" || { err "cluster-manager broker-config failed"; log_tail mosquitto; exit 1; }
ENV=()
start mosquitto "$(command -v mosquitto)" -c "$RUN/mqtt/mosquitto.conf"
wait_until mosquitto "listening on port $MQTT_PORT" 20 port_open "$MQTT_PORT"

ENV=(CLUSTER_NAME="$CLUSTER_NAME" SYSTEM_MANAGER_URL="$HOST" SYSTEM_MANAGER_GRPC_PORT="$GRPC_PORT"
  OAK_JOIN_TOKEN="$JOIN_TOKEN" OAK_API_PORT="$CLUSTER_PORT" OAK_BIND="$BIND"
  MQTT_BROKER_URL="$HOST" MQTT_BROKER_PORT="$MQTT_PORT" OAK_MQTT_ADMIN_PASSWORD="$MQTT_PW"
  OAK_STATE_DIR="$RUN/cluster")
off=$(log_size cluster-manager)
start cluster-manager "$B/bin/cluster-manager"
wait_until cluster-manager "'listening' line" 30 log_has cluster-manager "$off" "cluster-manager listening"
cluster_up() {
  api GET /api/clusters/active | jq -e --arg n "$CLUSTER_NAME" 'any(.[]; .cluster_name == $n and .connected)' >/dev/null
}
wait_until cluster-manager "join at the root (see 'not connected to the root' in its log)" 30 cluster_up
CLUSTER_ID=$(api GET /api/clusters/ | jq -r --arg n "$CLUSTER_NAME" \
  '[.[] | select(.cluster_name == $n)][0] | (._id // .cluster_id // "?")')
[ -s "$RUN/cluster/worker-token" ] || { err "$RUN/cluster/worker-token is missing"; exit 1; }

# ---- worker -------------------------------------------------------------

ENV=(OAK_CLUSTER_ADDRESS="$HOST" OAK_CLUSTER_PORT="$CLUSTER_PORT"
  OAK_WORKER_TOKEN="$(head -n1 "$RUN/cluster/worker-token")" OAK_STATE_DIR="$RUN/worker"
  OAK_NODE_NAME="$NODE_NAME" OAK_RUNC_ROOT="$RUNC_ROOT" OAK_CGROUP_PARENT="oak-$NODE_NAME"
  OAK_INSECURE_REGISTRIES="$HOST:$REGISTRY_PORT"
  OAK_NETMANAGER_SOCKET="$RUN/worker/netmanager.sock")
off=$(log_size node-engine)
start node-engine "$B/bin/node-engine"
wait_until node-engine "registration with the cluster" 30 log_has node-engine "$off" "node-engine registered node_id="
NODE_ID=$(tail -c +"$((off + 1))" "$LOGS/node-engine.log" | grep -o 'registered node_id=[^ ]*' | tail -n1 | cut -d= -f2)

# ---- the demo application ------------------------------------------------

APP_LINE=
if [ $DEMO -eq 1 ]; then
  SLA=$(jq -c --arg img "$DEMO_IMAGE" '.applications[0].microservices[0].code = $img' deploy/local/demo-app.json)
  app_name=$(jq -r '.applications[0].application_name' <<<"$SLA")
  app_ns=$(jq -r '.applications[0].application_namespace' <<<"$SLA")
  find_app() {
    api GET /api/applications/ | jq -c --arg n "$app_name" --arg ns "$app_ns" \
      '[.[] | select(.application_name == $n and .application_namespace == $ns)][0] // empty'
  }
  app=$(find_app)
  if [ -z "$app" ]; then
    say "deploying the demo application ($(show "$REPO/deploy/local/demo-app.json"), image $DEMO_IMAGE)"
    api POST /api/application/ "$SLA" >/dev/null || { err "deploying the demo application failed"; exit 1; }
    app=$(find_app)
  else
    say "the demo application is deployed already (from an earlier run): waiting for it"
  fi
  APP_ID=$(jq -r '._id // .applicationID' <<<"$app")
  SERVICE_ID=$(jq -r '.microservices[0] | if type == "object" then (._id // .microserviceID) else . end' <<<"$app")
  svc=$(api GET "/api/service/$SERVICE_ID")
  if [ "$(jq -r '.code' <<<"$svc")" != "$DEMO_IMAGE" ]; then
    say "warning: the demo service runs $(jq -r .code <<<"$svc"), not $DEMO_IMAGE (registry port changed?)"
  fi
  if [ "$(jq '.instance_list | length' <<<"$svc")" -eq 0 ]; then
    say "the demo service has no instance: requesting one"
    api POST "/api/service/$SERVICE_ID/instance" >/dev/null
  fi
  # RUNNING at the root, and on the worker (the root may still show the
  # status of an earlier run until the worker has reported)
  demo_running() {
    api GET "/api/service/$SERVICE_ID" | jq -e 'any(.instance_list[]; .status == "RUNNING")' >/dev/null &&
      { env -i PATH="$PATH" "$B/bin/node-engine" status --json --state-dir "$RUN/worker" || true; } |
      jq -e --arg s "$SERVICE_ID" 'any(.instances[]; .service_id == $s and .status == "RUNNING")' >/dev/null
  }
  for ((i = 0; i < DEMO_TIMEOUT_S * 5; i++)); do
    demo_running && break
    for n in "${ORDER[@]}"; do
      alive "$n" || { err "$n exited (exit status $RC) while the demo was starting"; log_tail "$n"; exit 1; }
    done
    sleep 0.2
  done
  if ! demo_running; then
    err "the demo instance is not RUNNING after ${DEMO_TIMEOUT_S}s:" \
      "$(api GET "/api/service/$SERVICE_ID" | jq -c '[.instance_list[] | {instance_number, status, status_detail}]')"
    log_tail node-engine
    log_tail cluster-manager
    exit 1
  fi
  APP_LINE="demo         application demo (id $APP_ID), service hello (id $SERVICE_ID): RUNNING"
fi

# ---- ready ---------------------------------------------------------------

OAKCTL=$(show "$B/bin/oakctl")
PW_FILE=$(show "$RUN/root/admin-password")
SID=${SERVICE_ID:-<service id>}
cat <<MSG

==> oak is ready. Everything runs on this machine; Ctrl-C stops it all.
  API          $API/api  (browse $API/api/docs)
  login        user Admin, password in $PW_FILE
  cluster      $CLUSTER_NAME (id $CLUSTER_ID): workers register at $HOST:$CLUSTER_PORT, MQTT on $HOST:$MQTT_PORT
  worker       $NODE_NAME (id $NODE_ID), runc root $(show "$RUNC_ROOT")
  registry     $HOST:$REGISTRY_PORT, holds $DEMO_IMAGE (push with skopeo --dest-tls-verify=false)
MSG
[ -z "$APP_LINE" ] || echo "  $APP_LINE"
echo "  state, logs  $(show "$RUN")/ (logs/<daemon>.log); rm -rf it to start afresh"
echo
if [ -x "$B/bin/oakctl" ]; then
  cat <<MSG
Try:
  $OAKCTL login --api $API --password-file $PW_FILE
  $OAKCTL cluster list
  $OAKCTL node list
  $OAKCTL app list
  $OAKCTL instance list
  $OAKCTL instance logs $SID 0 --tail 5
  $OAKCTL app deploy -f my-app.json --wait    # an SLA like $(show "$REPO/deploy/local/demo-app.json")
MSG
else
  cat <<MSG
Try ($OAKCTL is not built; with curl):
  TOKEN=\$(jq -cn --rawfile pw $PW_FILE '{username: "Admin", password: (\$pw | rtrimstr("\\n"))}' |
    curl -s -d @- $API/api/auth/login | jq -r .token)
  curl -s -H "Authorization: Bearer \$TOKEN" $API/api/clusters/ | jq
  curl -s -H "Authorization: Bearer \$TOKEN" $API/api/applications/ | jq
  curl -s -H "Authorization: Bearer \$TOKEN" $API/api/service/$SID | jq .instance_list
  $(show "$B/bin/node-engine") logs $SID-0 --tail 5 --state-dir $RUN/worker
MSG
fi
echo

# ---- run until Ctrl-C or until a daemon dies ------------------------------

while :; do
  wait -n "${PID[@]}" 2>/dev/null || true
  for n in "${ORDER[@]}"; do
    if ! alive "$n"; then
      err "$n exited unexpectedly (exit status $RC); stopping the rest"
      log_tail "$n"
      exit 1
    fi
  done
done
