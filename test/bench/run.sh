#!/usr/bin/env bash
# Runs every benchmark against the release build in $1 (default build) and
# prints one line per measurement. Numbers go to docs/benchmarks.md by hand
# with the command that produced them.
set -euo pipefail
B=${1:-build}
cd "$(dirname "$0")/../.."
export OAK_BUILD_DIR="$PWD/$B"
export OAK_SHARED_DIR="${OAK_SHARED_DIR:-$(cd .. && pwd)/shared}"
echo "== root scheduler (1,000 clusters)"
"$B/test/bench/bench_sched" 1000 5000
echo "== cluster scheduler (1,000 and 10,000 workers)"
"$B/test/bench/bench_cluster_sched" 5000
echo "== REST read latency (4 keep-alive clients, 5 s)"
"$B/test/bench/bench_api" 4 5
echo "== cluster-manager under 1,000 and 10,000 simulated workers (2 s reports, 20 s)"
"$B/test/bench/bench_cluster_load" 1000 10000
echo "== node-engine idle (0 and 50 instances, 20 s), deploy latency (20), image pull"
"$B/test/bench/bench_node"
