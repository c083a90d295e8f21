#!/usr/bin/env bash
# Writes docs/benchmarks.md (to stdout) from the results of one run of
# test/bench/run.sh: RESULTS_DIR holds env (machine, commit, times), runs
# (one line per benchmark: name status rc seconds others_cores load_before
# load_after) and <name>.cmd / .out / .err of each benchmark, whose
# `RESULT <key> <value> <unit>` lines carry the figures. Every number of
# the report comes from there; a figure whose benchmark failed, was
# skipped or was not run reads "not measured" with the reason.
#
#   test/bench/report.sh RESULTS_DIR > docs/benchmarks.md
#
# The targets and Oakestra figures are the rows of
# /work/shared/ARCHITECTURE.md §9 ("Performance targets").
set -euo pipefail

R=${1:?usage: report.sh RESULTS_DIR}
[[ -f $R/env && -f $R/runs ]] || {
    echo "report.sh: $R has no env/runs (run test/bench/run.sh)" >&2
    exit 2
}

env_get() { sed -n "s/^$1=//p" "$R/env" | tail -1; }

declare -A V STATUS RC SECS OTHERS L0 L1
while read -r tag key val _; do
    [[ $tag == RESULT ]] && V[$key]=$val
done < <(cat "$R"/*.out 2>/dev/null | grep '^RESULT ' || true)
RUNS=()
while read -r name st rc secs others l0 l1; do
    RUNS+=("$name")
    STATUS[$name]=$st RC[$name]=$rc SECS[$name]=$secs OTHERS[$name]=$others L0[$name]=$l0 L1[$name]=$l1
done <"$R/runs"

# ---- formatting ----

calc() { awk "BEGIN { $1 }"; }
# thousands separators: 10000 -> 10,000
grp() { sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|[^0-9]\)/\1,\2\3/' -e 'ta' <<<"$1"; }
v() { echo "${V[$1]}"; }
have() {
    local k
    for k in "$@"; do [[ -n ${V[$k]+x} ]] || return 1; done
}
us() { calc "v = ${V[$1]}; if (v >= 1000) printf \"%.2f ms\", v / 1000; else if (v < 100) printf \"%.1f µs\", v; else printf \"%.0f µs\", v"; }
ms() { calc "v = ${V[$1]}; if (v >= 1000) printf \"%.2f s\", v / 1000; else if (v < 100) printf \"%.1f ms\", v; else printf \"%.0f ms\", v"; }
# kB (KiB, as /proc reports) -> MB (10^6 bytes)
mb() { calc "printf \"%.1f MB\", ${V[$1]} * 1024 / 1e6"; }
mb_sum() { calc "printf \"%.1f MB\", (${V[$1]} + ${V[$2]}) * 1024 / 1e6"; }
pct() { calc "v = ${V[$1]}; if (v < 10) printf \"%.2f %%\", v; else printf \"%.1f %%\", v"; }
int() { grp "$(calc "printf \"%.0f\", ${V[$1]}")"; }
# yes when a <= b (numbers or awk expressions)
le() { calc "exit !(($1) <= ($2))" && echo yes || echo "**no**"; }

# Why the results of benchmark $1 are missing.
why() {
    local st=${STATUS[$1]:-}
    case $st in
        quick) echo "not measured (OAK_BENCH_QUICK=1 skips it)" ;;
        failed) echo "not measured: $1 failed (exit ${RC[$1]})" ;;
        skipped) echo "not measured: $1 skipped ($(grep -m1 SKIPPED "$R/$1.out" | sed 's/|/\\|/g'))" ;;
        ok) echo "not measured: $1 printed no such result" ;;
        *) echo "not measured: $1 was not run" ;;
    esac
}

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

# ---- header ----

started=$(env_get started)
took=$(($(env_get finished_s) - $(env_get started_s)))
mem_gib=$(calc "printf \"%.0f\", $(env_get mem_kb) / 1048576")
commit=$(env_get commit)
[[ $(env_get dirty) == 1 ]] && commit="$commit with uncommitted changes"
mode="full"
[[ $(env_get quick) == 1 ]] && mode="quick (\`OAK_BENCH_QUICK=1\`: the 10,000-worker load was skipped)"

cat <<EOF
# Benchmarks

Written by \`make bench\` (test/bench/run.sh, which runs every benchmark of
test/bench/ against the release build and generates this file with
test/bench/report.sh). Do not edit the figures by hand: every number below
comes from the run described here, and the next run replaces the file.

- **When:** $started, $((took / 60)) min $((took % 60)) s; mode: $mode
- **Machine:** $(env_get cpu), $(env_get cores) cores, $mem_gib GiB; kernel $(env_get kernel); $(env_get os)
- **Command:** \`$(env_get command)\` (build directory \`$(env_get build)\`, \`-O2\`)
- **Commit:** \`$commit\`

## Summary

Targets and Oakestra figures: /work/shared/ARCHITECTURE.md §9. "met?"
compares the median for deploy latency (the target is a median), the
worst round for failover, the p99 for scheduling decisions, and the single
measurement otherwise. MB = 10⁶ bytes; CPU in % of one core.

| metric | Oakestra | target | measured | met? |
|---|---|---|---|---|
EOF

# ---- summary rows: ARCHITECTURE.md §9, then the further figures ----

if have idle0_node_engine_rss; then
    row "idle worker RSS, node-engine + net-manager" "100 MB stated minimum" "≤ 15 MB" \
        "$(mb idle0_node_engine_rss), of which $(mb idle0_node_engine_rss_anon) anonymous (node-engine alone: net-manager is not built yet)" \
        "$(le "$(v idle0_node_engine_rss) * 1024 / 1e6" 15)"
    row "idle worker CPU" "≈3.8 % of a core" "≤ 0.3 %" "$(pct idle0_node_engine_cpu) (node-engine, no instance)" \
        "$(le "$(v idle0_node_engine_cpu)" 0.3)"
else
    row "idle worker RSS, node-engine + net-manager" "100 MB stated minimum" "≤ 15 MB" "$(why bench_node)" "–"
    row "idle worker CPU" "≈3.8 % of a core" "≤ 0.3 %" "$(why bench_node)" "–"
fi
if have idle0_system_manager_rss idle0_cluster_manager_rss; then
    row "idle control plane RSS, system-manager + cluster-manager (without DB/broker)" "500 MB–1 GB stated" "≤ 40 MB" \
        "$(mb_sum idle0_system_manager_rss idle0_cluster_manager_rss) (system-manager $(mb idle0_system_manager_rss) + cluster-manager $(mb idle0_cluster_manager_rss); of which $(mb_sum idle0_system_manager_rss_anon idle0_cluster_manager_rss_anon) anonymous; one cluster, one worker)" \
        "$(le "($(v idle0_system_manager_rss) + $(v idle0_cluster_manager_rss)) * 1024 / 1e6" 40)"
else
    row "idle control plane RSS, system-manager + cluster-manager (without DB/broker)" "500 MB–1 GB stated" "≤ 40 MB" "$(why bench_node)" "–"
fi
if have deploy_p50 deploy_p95 deploy_n; then
    row "deploy latency, image cached, API call → RUNNING, through both schedulers" "5.5–6.2 s" "≤ 300 ms median" \
        "p50 $(ms deploy_p50), p95 $(ms deploy_p95) (n=$(int deploy_n))" "$(le "$(v deploy_p50)" 300)"
else
    row "deploy latency, image cached, API call → RUNNING, through both schedulers" "5.5–6.2 s" "≤ 300 ms median" "$(why bench_node)" "–"
fi
if have cluster_sched_1000_bestfit_p50 cluster_sched_1000_bestfit_p99; then
    row "scheduling decision at 1,000 workers (cluster scheduler, best fit)" "3.2 ms at 45 workers" "≤ 1 ms" \
        "p50 $(us cluster_sched_1000_bestfit_p50), p99 $(us cluster_sched_1000_bestfit_p99)" \
        "$(le "$(v cluster_sched_1000_bestfit_p99)" 1000)"
else
    row "scheduling decision at 1,000 workers (cluster scheduler, best fit)" "3.2 ms at 45 workers" "≤ 1 ms" "$(why bench_cluster_sched)" "–"
fi
if have root_sched_1000_p50 root_sched_1000_p99; then
    row "scheduling decision at 1,000 clusters (root scheduler)" "3.2 ms at 45 workers" "≤ 1 ms" \
        "p50 $(us root_sched_1000_p50), p99 $(us root_sched_1000_p99)" "$(le "$(v root_sched_1000_p99)" 1000)"
else
    row "scheduling decision at 1,000 clusters (root scheduler)" "3.2 ms at 45 workers" "≤ 1 ms" "$(why bench_sched)" "–"
fi
if have cluster_load_10000_workers_online cluster_load_10000_cm_cpu cluster_load_10000_cm_rss; then
    row "workers one cluster-manager sustains (2 s reports)" "500 simulated" "≥ 10,000 on one core" \
        "$(int cluster_load_10000_workers_online) online: cluster-manager $(pct cluster_load_10000_cm_cpu), $(mb cluster_load_10000_cm_rss)" \
        "$(calc "exit !($(v cluster_load_10000_workers_online) >= 10000 && $(v cluster_load_10000_cm_cpu) < 100)" && echo yes || echo "**no**")"
else
    row "workers one cluster-manager sustains (2 s reports)" "500 simulated" "≥ 10,000 on one core" "$(why bench_cluster_load_10000)" "–"
fi
for kind in kill freeze; do
    if [[ $kind == kill ]]; then
        what="worker killed → its instances RUNNING elsewhere (node-engine and containers SIGKILLed)"
    else
        what="worker host frozen → its instances RUNNING elsewhere (node-engine SIGSTOPped: no TCP reset)"
    fi
    if have failover_${kind}_p50 failover_${kind}_p95 failover_${kind}_max failover_${kind}_n; then
        row "$what" "30–45 s" "≤ 5 s" \
            "p50 $(ms failover_${kind}_p50), p95 $(ms failover_${kind}_p95), max $(ms failover_${kind}_max) (n=$(int failover_${kind}_n))" \
            "$(le "$(v failover_${kind}_max)" 5000)"
    else
        row "$what" "30–45 s" "≤ 5 s" "$(why bench_failover)" "–"
    fi
done
row "overlay throughput, CPU-bound, vs native veth in the same run" "–" "≥ 50 %" "not measured: no benchmark (net-manager is not built yet)" "–"
row "overlay added round-trip time" "+2 ms vs K3s" "≤ 100 µs" "not measured: no benchmark (net-manager is not built yet)" "–"

# further figures (no §9 row of their own)
for d in system_manager cluster_manager node_engine mosquitto; do
    case $d in
        system_manager) label="system-manager idle (embedded SQLite; one cluster)" ;;
        cluster_manager) label="cluster-manager idle (one worker)" ;;
        node_engine) label="node-engine idle with 50 instances RUNNING" ;;
        mosquitto) label="mosquitto idle (outside the targets; one cluster-manager, one worker)" ;;
    esac
    n=0
    [[ $d == node_engine ]] && n=50
    if have idle${n}_${d}_rss idle${n}_${d}_cpu; then
        row "$label: RSS, CPU" "–" "–" "$(mb idle${n}_${d}_rss), $(pct idle${n}_${d}_cpu)" "–"
    else
        row "$label: RSS, CPU" "–" "–" "$(why bench_node)" "–"
    fi
done
if have idle0_system_manager_cpu idle0_cluster_manager_cpu; then
    row "idle control plane CPU, system-manager + cluster-manager" "–" "–" \
        "$(calc "printf \"%.2f %%\", $(v idle0_system_manager_cpu) + $(v idle0_cluster_manager_cpu)")" "–"
fi
if have deploy_worker_p50 deploy_worker_p95; then
    row "deploy: worker's share (desired state on the worker → RUNNING at the root)" "–" "–" \
        "p50 $(ms deploy_worker_p50), p95 $(ms deploy_worker_p95)" "–"
fi
if have cluster_sched_10000_bestfit_p50 cluster_sched_10000_bestfit_p99; then
    row "scheduling decision at 10,000 workers (cluster scheduler, best fit)" "–" "–" \
        "p50 $(us cluster_sched_10000_bestfit_p50), p99 $(us cluster_sched_10000_bestfit_p99)" "–"
fi
if have root_place_persisted_1000_mean; then
    row "root placement persisted (decision + SQLite transaction, fsync), 1,000 clusters" "–" "–" \
        "$(calc "printf \"%.1f ms\", $(v root_place_persisted_1000_mean) / 1000") mean" "–"
fi
if have cluster_load_1000_cm_cpu cluster_load_1000_cm_rss; then
    row "cluster-manager with 1,000 simulated workers (2 s reports)" "–" "–" \
        "$(pct cluster_load_1000_cm_cpu), $(mb cluster_load_1000_cm_rss)" "–"
else
    row "cluster-manager with 1,000 simulated workers (2 s reports)" "–" "–" "$(why bench_cluster_load_1000)" "–"
fi
if have cluster_load_10000_register_s cluster_load_10000_register_rate; then
    row "registration of 10,000 workers (HTTP + broker credentials)" "–" "–" \
        "$(calc "printf \"%.1f min\", $(v cluster_load_10000_register_s) / 60") ($(int cluster_load_10000_register_rate)/s on average)" "–"
else
    row "registration of 10,000 workers (HTTP + broker credentials)" "–" "–" "$(why bench_cluster_load_10000)" "–"
fi
if have api_read_p50 api_read_p99 api_read_rps; then
    row "REST read \`GET /api/application/<id>\`, 4 keep-alive clients" "–" "–" \
        "p50 $(us api_read_p50), p99 $(us api_read_p99), $(int api_read_rps) req/s" "–"
else
    row "REST read \`GET /api/application/<id>\`, 4 keep-alive clients" "–" "–" "$(why bench_api)" "–"
fi
if have failover_kill_detect_p50 failover_freeze_detect_p50; then
    row "failover: the root sees the instance lost (kill / freeze), p50" "–" "–" \
        "$(ms failover_kill_detect_p50) / $(ms failover_freeze_detect_p50)" "–"
fi
if have image_pull_p50 image_pull_bytes; then
    row "image pull into a fresh store (test image)" "–" "–" \
        "$(ms image_pull_p50) for $(calc "printf \"%.2f MB\", $(v image_pull_bytes) / 1e6")" "–"
fi

# ---- interference ----

cat <<EOF

## Benchmarks of this run, and how busy the machine was

"Others" is the CPU that processes other than the benchmark (and the
daemons it started) used meanwhile, in cores, averaged over the
benchmark's wall time: all cores' busy time from /proc/stat minus the CPU
time of the benchmark's process tree. The machine has $(env_get cores) cores. Where it is
well above 0, latencies (deploy, failover, REST, scheduling tails) and CPU
percentages of that benchmark may be inflated; RSS figures are not affected.

| benchmark | status | wall time | others (cores) | load average before → after |
|---|---|---|---|---|
EOF
disturbed=()
for n in "${RUNS[@]}"; do
    st=${STATUS[$n]}
    [[ $st == failed ]] && st="**failed** (exit ${RC[$n]})"
    [[ $st == quick ]] && st="not run (OAK_BENCH_QUICK=1)"
    if [[ ${STATUS[$n]} == quick ]]; then
        row "$n" "$st" "–" "–" "–"
        continue
    fi
    row "$n" "$st" "${SECS[$n]} s" "${OTHERS[$n]}" "${L0[$n]} → ${L1[$n]}"
    calc "exit !(${OTHERS[$n]} >= 0.2)" && disturbed+=("$n")
done
echo
if ((${#disturbed[@]})); then
    list=$(printf '%s, ' "${disturbed[@]}")
    echo "Possibly disturbed by other load (others ≥ 0.2 cores): ${list%, }."
else
    echo "No benchmark ran beside noticeable other load (others < 0.2 cores throughout)."
fi

# raw output of a benchmark (its human lines), or why there is none
raw() {
    local n=$1
    echo
    if [[ ${STATUS[$n]:-} == quick || -z ${STATUS[$n]:-} ]]; then
        echo "($n: $(why "$n"))"
        return
    fi
    echo '```'
    echo "\$ $(cat "$R/$n.cmd" 2>/dev/null || echo "$n")"
    grep -v '^RESULT ' "$R/$n.out" || true
    echo '```'
    if [[ ${STATUS[$n]} == failed ]]; then
        echo
        echo "It failed (exit ${RC[$n]}); the end of its error output:"
        echo
        echo '```'
        tail -n 25 "$R/$n.err"
        echo '```'
    fi
}

# ---- details ----

cat <<'EOF'

## Root tier

`bench_sched 1000 5000`: the root scheduler's decision (`sched_pick`) with
1,000 registered clusters of varied free capacity, in process, 5,000
decisions; then 500 placements persisted (decision + SQLite transaction
with the command, fsync) on an embedded SQLite store. The persisted
placement is dominated by SQLite's fsync in `synchronous=FULL` (durable
before the API answers) and by rewriting the service document, which holds
its instance list.

`bench_api 4 5`: the real system-manager (release build), 4 threads each
issuing `GET /api/application/<id>` over one keep-alive connection for 5 s.
Each read verifies the JWT, checks the user still exists (one store read)
and reads the application (one store read); the load generator runs on the
same cores as the daemon. `system_manager_idle_rss_kb` is the daemon alone
(one application, no cluster); the idle figures of the summary come from
bench_node, where it has a cluster.
EOF
raw bench_sched
raw bench_api

cat <<'EOF'

## Cluster tier

`bench_cluster_sched 5000`: the cluster scheduler's decision
(`sched_worker_pick`) with 1,000 and 10,000 random heterogeneous workers
(architectures, runtimes, cores, load, memory, GPUs; a tenth offline), in
process, 5,000 decisions per policy. Each decision is followed by a
reservation on the picked worker, as the cluster-manager does, so the
1,000-worker runs fill the cluster (placed < n once it is full).

`bench_cluster_load`: one real cluster-manager under the real
system-manager, mosquitto with dynamic security as the cluster configures
it, and `worker_sim` (test/tools/) simulating N workers that speak the real
protocol (HTTP registration, MQTT session, information every 2 s). After
every worker is online and the connect burst has settled, the
cluster-manager's CPU (utime + stime over 20 s) and RSS are read, with the
broker's and the simulator's for context (`cluster_load_aux`).
EOF
if have cluster_load_10000_register_s; then
    cat <<EOF

Known bottleneck: registering 10,000 workers took $(calc "printf \"%.0f\", $(v cluster_load_10000_register_s) / 60") minutes in this run
because mosquitto's dynamic-security plugin rewrites its whole JSON file
on every change (two per worker), so registration slows down as the file
grows. Steady-state load is fine; mass onboarding is not yet. A stateless
broker credential scheme (per-node password = HMAC of the node id, ACL by
user name pattern) would remove it. This is most of the time \`make bench\`
takes.
EOF
else
    cat <<'EOF'

Known bottleneck: registering 10,000 workers took about half an hour in
earlier full runs because mosquitto's dynamic-security plugin rewrites its whole JSON file
on every change (two per worker), so registration slows down as the file
grows (this run did not measure it; see the table above). Steady-state
load is fine; mass onboarding is not yet. A stateless broker credential
scheme (per-node password = HMAC of the node id, ACL by user name pattern)
would remove it.
EOF
fi
raw bench_cluster_sched
raw bench_cluster_load_1000
raw bench_cluster_load_10000

cat <<'EOF'

## Worker tier and deploy latency

`bench_node --seconds 20 --deploys 50`: one real node-engine (release
build, default timings) as the only worker of a real cluster-manager
(mosquitto with dynamic security) under the real system-manager, the
busybox test image in a local registry (plain HTTP). Idle: RSS is VmRSS
(with its anonymous and file-backed parts), CPU is utime + stime over
20 s, read for the node-engine, the cluster-manager, the system-manager and
mosquitto over the same window, first with no instance, then with 50
instances `RUNNING` (one service with `"replicas": 50`, memory 16 MB,
vcpus 0). The file-backed part of an RSS is mostly shared libraries'
mapped code (shared with other processes using them). The CPU resolution
is one clock tick (10 ms) per 20 s window, 0.05 % of a core: 0.00 % means
less than one tick.

Deploy latency: with those 50 instances still running, 50 times
`POST /api/service/<id>/instance` at the root for a second service (one
instance at a time, image cached), then `GET` of the service every 5 ms
until one more instance is `RUNNING`: both schedulers, the worker and the
status report back through the cluster to the root. The worker's share
is measured from the moment the same poll sees the worker's desired-state
file, so it includes up to 5 ms of poll granularity and the status
report's way back; the container start proper (bundle, overlay mount,
`runc create/start`) is below it.

Image pull: the test image into a fresh store, 5 times, in process
(node_engine/image.c, plain HTTP from the local registry). The image is
too small for a meaningful throughput figure: the time is dominated by
per-request overhead (manifest, config, one layer) and unpacking.
EOF
if have idle0_system_manager_rss idle0_cluster_manager_rss idle0_system_manager_rss_file idle0_cluster_manager_rss_file; then
    cat <<EOF

Where the control plane's memory goes (no instance): of
$(mb_sum idle0_system_manager_rss idle0_cluster_manager_rss), $(mb_sum idle0_system_manager_rss_file idle0_cluster_manager_rss_file) are file-backed pages
(the binaries and their shared libraries: gRPC with abseil, libmongoc
with ICU, OpenSSL, SQLite, libmicrohttpd, ...; shared with any other process
mapping them), $(mb_sum idle0_system_manager_rss_anon idle0_cluster_manager_rss_anon) anonymous memory (heaps, stacks, the embedded
SQLite caches).
EOF
fi
raw bench_node

cat <<'EOF'

## Failover

`bench_failover --rounds 10`: the real system-manager, mosquitto (dynamic
security), cluster-manager, the local registry and two real node-engines
(default timings; one image store shared, so the image is cached on both),
one instance of a `sleep` service. Each round kills the worker hosting the
instance and measures from the kill until `GET /api/service/<id>` at the
root (polled every 5 ms) shows the instance `RUNNING` on the other worker:
detection, the cluster's rescheduling, the container start on the other
worker and the status report back to the root. "detect" is when the root
first stopped showing it `RUNNING` on the dead worker. After each round
the dead worker is removed (its containers deleted) and started again
with its state, so it rejoins as the same node; the next round kills
whichever worker then hosts the instance.

- **kill**: SIGKILL to the node-engine and to its containers' init
  processes: a crashed worker on a live host. The kernel closes its broker
  connection, mosquitto publishes the last will at once, and the cluster
  reschedules.
- **freeze**: SIGSTOP to the node-engine, SIGKILL to its containers: its
  connection stays open and silent, as when a host loses power or its
  network. Detection waits for the broker to notice the silent
  connection: mosquitto drops a client once no packet came from it for
  1.5 × its keepalive (the cluster's `worker_keepalive_s`, 2 s by
  default), checked in whole seconds, and then publishes its last will.
  A shorter keepalive shortens this part, at the price of more pings.
EOF
raw bench_failover

cat <<'EOF'

## Not measured yet

The overlay network figures of ARCHITECTURE.md §9 (throughput against
native veth, added round-trip time) need the net-manager, which is not
built yet; they get a benchmark with it.
EOF
