#!/usr/bin/env bash
# Single-machine launcher used by `make run`. Today it runs the root tier
# (system-manager on the embedded SQLite store) in the foreground; the
# cluster and worker tiers join it as they are built.
# State lives in ./run/ (override with OAK_RUN_DIR); a second run starts
# from the state the first one left. Ctrl-C stops it cleanly.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/../.."
RUN=${OAK_RUN_DIR:-$PWD/run}
mkdir -p "$RUN/root"
export OAK_STATE_DIR="$RUN/root"
export OAK_API_PORT="${OAK_API_PORT:-10000}"
export OAK_GRPC_PORT="${OAK_GRPC_PORT:-50052}"

cat <<MSG
Starting system-manager (state in $RUN/root)
  API:        http://localhost:$OAK_API_PORT/api/docs
  gRPC:       localhost:$OAK_GRPC_PORT (for cluster managers)
  Admin password: printed below on first start, kept in $RUN/root/admin-password
  Try:
    TOKEN=\$(curl -s -X POST localhost:$OAK_API_PORT/api/auth/login \\
      -d "{\"username\":\"Admin\",\"password\":\"\$(cat $RUN/root/admin-password)\"}" | jq -r .token)
    curl -s -H "Authorization: Bearer \$TOKEN" localhost:$OAK_API_PORT/api/applications/
Note: the cluster, worker and demo-application parts of \`make run\` arrive
with the cluster-manager and node-engine; until then no instance can run.
Press Ctrl-C to stop.
MSG
exec "$B/bin/system-manager"
