#!/usr/bin/env bash
# Runs every benchmark of the project against the release build in
# BUILD_DIR (default build; `make bench` builds it first) and writes
# docs/benchmarks.md from their results with test/bench/report.sh.
#
#   test/bench/run.sh [BUILD_DIR]
#
# Needs BUILD_DIR/bin/{system-manager,cluster-manager,node-engine},
# BUILD_DIR/test/bench/bench_* and BUILD_DIR/test/tools/worker_sim, root
# (runc), mosquitto and docker-registry. Each benchmark prints its human
# lines and `RESULT <key> <value> <unit>` lines (test/bench/bench.h); its
# output goes to the terminal and to BUILD_DIR/bench-results/<name>.out
# (stderr to <name>.err). Per benchmark the script also records its exit
# status, wall time and how much CPU other processes of the machine used
# meanwhile (all cores' busy time from /proc/stat minus the CPU time of the
# benchmark and its children), so the report can say which figures a busy
# machine may have disturbed. The report is written even when a benchmark
# fails (its rows say so); the exit status is then 1.
#
# Environment:
#   OAK_BENCH_QUICK=1   skip the 10,000-worker cluster load (~35 min, the
#                       registration through mosquitto's dynamic security);
#                       its rows read "not measured"
#   OAK_BENCH_DOC=FILE  write the report there instead of docs/benchmarks.md
#   OAK_SHARED_DIR      shared test data (default ../shared)
set -euo pipefail

# Machine-wide busy CPU time (ticks, all cores).
busy_ticks() {
    local _ u n s irq sirq st
    # cpu user nice system idle iowait irq softirq steal ...
    read -r _ u n s _ _ irq sirq st _ </proc/stat
    echo $((u + n + s + irq + sirq + st))
}

# CPU time (ticks) of this shell's waited-for children: a finished
# benchmark's own time plus that of the daemons it started and reaped.
children_ticks() {
    local s
    s=$(</proc/$$/stat)
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${14} + ${15}))
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# Machine, commit and command of the run, as key=value lines.
describe_run() {
    echo "started=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "started_s=$(date +%s)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "cores=$(grep -c '^processor' /proc/cpuinfo)"
    echo "mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
    echo "kernel=$(cat /proc/sys/kernel/osrelease)"
    echo "os=$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
    echo "commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    echo "dirty=$([[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && echo 1 || echo 0)"
    if [[ -n ${MAKELEVEL:-} ]]; then
        echo "command=make bench"
    else
        echo "command=test/bench/run.sh $B"
    fi
    echo "build=$B"
    echo "quick=$QUICK"
}

# run_bench NAME DESCRIPTION CMD... : runs one benchmark, records
# "NAME STATUS RC SECONDS OTHERS_CORES LOAD_BEFORE LOAD_AFTER" in runs
# (STATUS ok, failed or skipped) and sets failed=1 when it fails.
run_bench() {
    local name=$1 desc=$2 rc=0 t0 b0 c0 l0 dt others status
    shift 2
    echo "== $desc"
    echo "$*" >"$R/$name.cmd"
    t0=$(date +%s.%N) b0=$(busy_ticks) c0=$(children_ticks) l0=$(load1)
    "$@" 2> >(tee "$R/$name.err" >&2) | tee "$R/$name.out" || rc=${PIPESTATUS[0]}
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    others=$(awk -v b="$(($(busy_ticks) - b0 - ($(children_ticks) - c0)))" -v hz="$HZ" -v dt="$dt" \
        'BEGIN { v = b / hz / dt; printf "%.2f", v < 0 ? 0 : v }')
    if [[ $rc -ne 0 ]]; then
        status=failed
        failed=1
    elif grep -q SKIPPED "$R/$name.out"; then
        status=skipped
    else
        status=ok
    fi
    printf '%s %s %s %.0f %s %s %s\n' "$name" "$status" "$rc" "$dt" "$others" "$l0" "$(load1)" >>"$R/runs"
}

# Everything runs from here, after bash has read the whole file (so an
# edit of this script during a run cannot derail it).
main() {
    B=${1:-build}
    cd "$(dirname "$0")/../.."
    if [[ $B == /* ]]; then
        export OAK_BUILD_DIR="$B"
    else
        export OAK_BUILD_DIR="$PWD/$B"
    fi
    export OAK_SHARED_DIR="${OAK_SHARED_DIR:-$(cd .. && pwd)/shared}"
    QUICK=${OAK_BENCH_QUICK:-0}
    DOC=${OAK_BENCH_DOC:-docs/benchmarks.md}
    R="$B/bench-results"
    HZ=$(getconf CLK_TCK)
    failed=0

    local f
    for f in bin/system-manager bin/cluster-manager bin/node-engine test/tools/worker_sim \
        test/bench/bench_sched test/bench/bench_cluster_sched test/bench/bench_api \
        test/bench/bench_node test/bench/bench_failover test/bench/bench_cluster_load; do
        if [[ ! -x $B/$f ]]; then
            echo "run.sh: $B/$f is missing; build with: make O=$B all $B/test/bench/<each> $B/test/tools/worker_sim (or make bench)" >&2
            exit 2
        fi
    done
    rm -rf "$R"
    mkdir -p "$R"
    describe_run >"$R/env"

    run_bench bench_sched "root scheduler (1,000 clusters)" \
        "$B/test/bench/bench_sched" 1000 5000
    run_bench bench_cluster_sched "cluster scheduler (1,000 and 10,000 workers)" \
        "$B/test/bench/bench_cluster_sched" 5000
    run_bench bench_api "REST read latency (4 keep-alive clients, 5 s)" \
        "$B/test/bench/bench_api" 4 5
    run_bench bench_node "idle daemons (0 and 50 instances, 20 s), deploy latency (50), image pull" \
        "$B/test/bench/bench_node" --seconds 20 --deploys 50
    run_bench bench_failover "failover: worker killed / frozen, 10 rounds each" \
        "$B/test/bench/bench_failover" --rounds 10
    run_bench bench_cluster_load_1000 "cluster-manager under 1,000 simulated workers (2 s reports, 20 s)" \
        "$B/test/bench/bench_cluster_load" --seconds 20 1000
    if [[ $QUICK == 1 ]]; then
        echo "== cluster-manager under 10,000 simulated workers: skipped (OAK_BENCH_QUICK=1)"
        echo "bench_cluster_load_10000 quick 0 0 0 - -" >>"$R/runs"
    else
        run_bench bench_cluster_load_10000 \
            "cluster-manager under 10,000 simulated workers (2 s reports, 20 s; ~35 min)" \
            "$B/test/bench/bench_cluster_load" --seconds 20 --max-wait-s 3600 10000
    fi
    echo "finished_s=$(date +%s)" >>"$R/env"

    test/bench/report.sh "$R" >"$DOC.tmp"
    mv "$DOC.tmp" "$DOC"
    echo "== wrote $DOC (raw results in $R)"
    exit "$failed"
}

main "$@"
