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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for i in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timeout waiting for $2 in $1"; cat "$1"; return 1; }

# root
OAK_STATE_DIR=$dir/root OAK_API_PORT=0 OAK_GRPC_PORT=0 OAK_BIND=127.0.0.1 OAK_ADMIN_PASSWORD=vg-password \
  "$B/bin/system-manager" >"$dir/root.log" 2>&1 & pids+=($!)
wait_line "$dir/root.log" "listening"
api=$(grep -o 'api_port=[0-9]*' "$dir/root.log" | cut -d= -f2)
grpc=$(grep -o 'grpc_port=[0-9]*' "$dir/root.log" | cut -d= -f2)
tok=$(curl -sf -X POST 127.0.0.1:$api/api/auth/login -d '{"username":"Admin","password":"vg-password"}' | jq -r .token)
join=$(curl -sf -X POST -H "Authorization: Bearer $tok" 127.0.0.1:$api/api/clusters/token -d '{"cluster_name":"vg"}' | jq -r .token)

# broker
mq=$(free_port)
OAK_MQTT_ADMIN_PASSWORD=mq-secret "$B/bin/cluster-manager" broker-config "$dir/mq" "$mq" 127.0.0.1 >/dev/null
/usr/sbin/mosquitto -c "$dir/mq/mosquitto.conf" >"$dir/mq.log" 2>&1 & pids+=($!)
for i in $(seq 1 50); do (echo >/dev/tcp/127.0.0.1/$mq) 2>/dev/null && break; sleep 0.1; done

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
kill -TERM $cm
set +e; wait $cm; rc=$?; set -e
grep -E "definitely lost|indirectly lost|ERROR SUMMARY" "$dir/valgrind.log" || true
if [ $rc -ne 0 ]; then echo "cluster-manager under valgrind exited $rc"; tail -80 "$dir/valgrind.log"; tail -20 "$dir/cm.log"; exit 1; fi
echo "valgrind: no leaks, no errors"
