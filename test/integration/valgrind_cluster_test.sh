#!/usr/bin/env bash
# Runs the release cluster-manager (from $OAK_RELEASE_DIR, default build/)
# under valgrind next to a real system-manager and mosquitto, registers a
# worker, lets it join the root and report, stops it with SIGTERM and fails
# on any definite or indirect leak or memory error.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${OAK_RELEASE_DIR:-build}
dir=$(mktemp -d /tmp/vg-cluster-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
. test/integration/lib/vgstack.sh
vg_root
vg_broker

# cluster manager under valgrind
CLUSTER_NAME=vg SYSTEM_MANAGER_URL=127.0.0.1 SYSTEM_MANAGER_GRPC_PORT=$grpc OAK_JOIN_TOKEN=$join \
MQTT_BROKER_PORT=$mq OAK_MQTT_ADMIN_PASSWORD=mq-secret OAK_WORKER_TOKEN=vg-worker-token \
OAK_STATE_DIR=$dir/cluster OAK_API_PORT=0 OAK_BIND=127.0.0.1 OAK_REPORT_INTERVAL_MS=300 \
  valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
  --log-file="$dir/valgrind.log" "$B/bin/cluster-manager" >"$dir/cm.log" 2>&1 &
cm=$!; pids+=($cm)
wait_line "$dir/cm.log" "cluster-manager listening"
cport=$(grep -o 'api_port=[0-9]*' "$dir/cm.log" | cut -d= -f2)
curl -sf -X POST -H "Authorization: Bearer vg-worker-token" 127.0.0.1:$cport/api/node/register \
  -d '{"host":"w1","ip":"127.0.0.1","port":50103,"architecture":"amd64","virtualization":["container"],"cpu_cores":2,"memory":2048}' >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST 127.0.0.1:$cport/api/node/register -d '{}')
[ "$code" = 401 ] || { echo "expected 401, got $code"; exit 1; }
wait_line "$dir/cm.log" "connected to the root"
sleep 1
curl -sf 127.0.0.1:$cport/api/cluster/status | jq -e '.connected_to_root == true and .workers == 1' >/dev/null
vg_finish $cm cluster-manager
