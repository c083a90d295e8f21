#!/usr/bin/env bash
# Runs the release system-manager (from $OAK_RELEASE_DIR, default build/)
# under valgrind, drives the API through login, application registration,
# instance requests and deletion, stops it with SIGTERM and fails on any
# definite or indirect leak or memory error.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${OAK_RELEASE_DIR:-build}
SHARED=${OAK_SHARED_DIR:-../shared}
dir=$(mktemp -d /tmp/vg-root-XXXXXX)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
OAK_STATE_DIR=$dir OAK_API_PORT=0 OAK_GRPC_PORT=0 OAK_BIND=127.0.0.1 OAK_ADMIN_PASSWORD=vg-password \
  valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
  --log-file="$dir/valgrind.log" "$B/bin/system-manager" >"$dir/out.log" 2>&1 &
pid=$!
for i in $(seq 1 200); do
  port=$(grep -o 'api_port=[0-9]*' "$dir/out.log" 2>/dev/null | cut -d= -f2 || true)
  [ -n "$port" ] && break; sleep 0.1
done
[ -n "$port" ] || { echo "system-manager did not start"; cat "$dir/out.log"; exit 1; }
api=http://127.0.0.1:$port
tok=$(curl -sf -X POST $api/api/auth/login -d '{"username":"Admin","password":"vg-password"}' | jq -r .token)
auth="Authorization: Bearer $tok"
curl -sf -X POST -H "$auth" $api/api/application/ -d @"$SHARED/testdata/sla/valid/clientserver.json" >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "$auth" $api/api/application/ -d @"$SHARED/testdata/sla/invalid/wrong-types.json")
[ "$code" = 422 ] || { echo "expected 422, got $code"; exit 1; }
sid=$(curl -sf -H "$auth" $api/api/services/ | jq -r '.[0]._id')
curl -sf -X POST -H "$auth" $api/api/service/$sid/instance -d '{"replicas":2}' >/dev/null
curl -sf -X POST -H "$auth" $api/api/clusters/token -d '{"cluster_name":"c1"}' >/dev/null
curl -sf -H "$auth" $api/api/docs/openapi.json >/dev/null
curl -sf -X DELETE -H "$auth" $api/api/service/$sid/instance/0 >/dev/null
aid=$(curl -sf -H "$auth" $api/api/applications/ | jq -r '.[0]._id')
curl -sf -X DELETE -H "$auth" $api/api/application/$aid >/dev/null
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
grep -E "definitely lost|indirectly lost|ERROR SUMMARY" "$dir/valgrind.log" || true
if [ $rc -ne 0 ]; then echo "system-manager under valgrind exited $rc"; cat "$dir/valgrind.log" | tail -60; exit 1; fi
echo "valgrind: no leaks, no errors"
