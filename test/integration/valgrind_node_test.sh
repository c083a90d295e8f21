#!/usr/bin/env bash
# Runs the release node-engine (from $OAK_RELEASE_DIR, default build/) under
# valgrind as the worker of a real system-manager, mosquitto and
# cluster-manager, and puts it through its daemon life: registration, MQTT,
# an image pulled from an oci: layout (built offline from busybox-static),
# a runc container RUNNING, its logs fetched through the root, undeploy,
# SIGTERM. Fails on any definite or indirect leak or memory error, or when
# the life above does not happen. Needs root, runc, umoci and busybox-static
# (prints SKIPPED otherwise).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${OAK_RELEASE_DIR:-build}
for t in valgrind runc umoci busybox mosquitto jq curl; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "SKIPPED: $(basename "$0"): $t is not installed"; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "SKIPPED: $(basename "$0"): needs root (runc containers)"; exit 0; }
dir=$(mktemp -d /tmp/vg-node-XXXXXX)
name=vgnode$$
runc_root=/run/oak-$name
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for c in $(runc --root "$runc_root" list -q 2>/dev/null); do
    runc --root "$runc_root" kill "$c" KILL 2>/dev/null || true
    runc --root "$runc_root" delete -f "$c" 2>/dev/null || true
  done
  rm -rf "$runc_root"
  find /sys/fs/cgroup -depth -type d -name "oak-$name*" -exec rmdir {} \; 2>/dev/null || true
  umount -R "$dir/worker" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
. test/integration/lib/vgstack.sh
fail() { echo "FAIL: $*"; tail -30 "$dir/ne.log"; tail -40 "$dir/valgrind.log"; exit 1; }

vg_root
GET() { curl -sf -H "Authorization: Bearer $tok" "127.0.0.1:$api$1"; }

# broker and cluster manager
vg_broker
CLUSTER_NAME=vg SYSTEM_MANAGER_URL=127.0.0.1 SYSTEM_MANAGER_GRPC_PORT=$grpc OAK_JOIN_TOKEN=$join \
MQTT_BROKER_PORT=$mq OAK_MQTT_ADMIN_PASSWORD=mq-secret OAK_WORKER_TOKEN=vg-worker-token \
OAK_STATE_DIR=$dir/cluster OAK_API_PORT=0 OAK_BIND=127.0.0.1 OAK_REPORT_INTERVAL_MS=300 \
OAK_WORKER_DEAD_S=60 "$B/bin/cluster-manager" >"$dir/cm.log" 2>&1 & pids+=($!)
wait_line "$dir/cm.log" "cluster-manager listening"
cport=$(grep -o 'api_port=[0-9]*' "$dir/cm.log" | cut -d= -f2)
wait_line "$dir/cm.log" "connected to the root"

# the image: an OCI layout on disk (no registry needed)
deploy/local/demo-image.sh "$dir/img/demo" >/dev/null

# the node engine under valgrind (slow: generous heartbeat, dead-worker and wait times)
OAK_CLUSTER_ADDRESS=127.0.0.1 OAK_CLUSTER_PORT=$cport OAK_WORKER_TOKEN=vg-worker-token \
OAK_STATE_DIR=$dir/worker OAK_NODE_NAME=$name OAK_RUNC_ROOT=$runc_root OAK_CGROUP_PARENT=oak-$name \
OAK_OCI_ROOT=$dir/img OAK_HEARTBEAT_S=2 OAK_STOP_TIMEOUT_S=2 OAK_LOG_LEVEL=debug \
  valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
  --log-file="$dir/valgrind.log" "$B/bin/node-engine" >"$dir/ne.log" 2>&1 &
ne=$!; pids+=($ne)
wait_line "$dir/ne.log" "node-engine registered" 600 || fail "the node engine did not register"

# deploy one instance from the layout
jq --arg code "oci:$dir/img/demo:1" '.applications[0].application_name = "vg"
    | .applications[0].microservices[0].code = $code
    | .applications[0].microservices[0].environment = ["INTERVAL=1"]' deploy/local/demo-app.json >"$dir/sla.json"
curl -sf -H "Authorization: Bearer $tok" -X POST "127.0.0.1:$api/api/application/" -d @"$dir/sla.json" >"$dir/app.json" ||
  fail "deploy refused"
app=$(jq -r '.[] | select(.application_name == "vg") | ._id' "$dir/app.json")
sid=$(jq -r '.[] | select(.application_name == "vg") | .microservices[0]' "$dir/app.json")
# valgrind 3.19 (Debian 12) does not implement pidfd_open, which the runtime
# needs to watch a container's init: under it the container is created and
# then fails with ENOSYS (node_engine_test covers RUNNING under ASan). Either
# way the pull, unpack, bundle, runc and failure paths run under valgrind.
st=""
for i in $(seq 1 600); do
  st=$(GET "/api/service/$sid" | jq -r '.instance_list[0].status // empty')
  [ "$st" = RUNNING ] && break
  grep -q "pidfd_open .*Function not implemented" "$dir/ne.log" && break
  sleep 0.2
done
if [ "$st" = RUNNING ]; then
  echo "instance RUNNING on the node engine under valgrind"
  [ "$(runc --root "$runc_root" list -q | wc -l)" = 1 ] || fail "expected one runc container"
elif grep -q "pidfd_open .*Function not implemented" "$dir/ne.log"; then
  grep -q "pulling oci:" "$dir/ne.log" || fail "the image was not pulled"
  echo "note: $(valgrind --version) lacks pidfd_open: the instance was pulled and created, then FAILED (expected under valgrind)"
  sleep 3 # a few restarts through the cluster
else
  fail "instance neither RUNNING nor failing on pidfd_open after 120 s (status '$st')"
fi

# a logs request, through root, cluster and worker: answered (200 with the
# output, or 404 when the instance is not there any more), never lost
code=$(curl -s -o "$dir/logs.json" -w '%{http_code}' -H "Authorization: Bearer $tok" \
  "127.0.0.1:$api/api/service/$sid/instance/0/logs?tail=3")
case $code in
  200 | 404) echo "logs through the root: HTTP $code" ;;
  *) fail "logs request: HTTP $code $(cat "$dir/logs.json")" ;;
esac

# undeploy: the container goes away
curl -sf -H "Authorization: Bearer $tok" -X DELETE "127.0.0.1:$api/api/application/$app" >/dev/null || fail "undeploy refused"
for i in $(seq 1 300); do
  [ -z "$(runc --root "$runc_root" list -q 2>/dev/null)" ] && break
  sleep 0.2
done
[ -z "$(runc --root "$runc_root" list -q 2>/dev/null)" ] || fail "the container is still there 60 s after undeploy"
echo "undeployed: no container left"

vg_finish $ne node-engine
