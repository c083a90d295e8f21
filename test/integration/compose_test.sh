#!/usr/bin/env bash
# Validates every docker-compose file under deploy/ with `docker-compose
# config` (no Docker engine is needed for that).
set -euo pipefail
cd "$(dirname "$0")/../.."
# placeholder values for the variables the compose files require
export SYSTEM_MANAGER_URL=root.example CLUSTER_NAME=edge1 OAK_JOIN_TOKEN=token \
  OAK_MQTT_ADMIN_PASSWORD=secret
n=0
for f in $(find deploy -name 'docker-compose*.yml' | sort); do
  docker-compose -f "$f" config >/dev/null
  echo "valid: $f"; n=$((n+1))
done
[ "$n" -gt 0 ] || { echo "no compose files found"; exit 1; }
