#!/usr/bin/env bash
# End-to-end scenario 5: a whole cluster cut off from the root.
#
# On the network-namespace testbed (test/e2e/lib/testbed.sh, which runs the
# root with cluster_stale_s = cluster_grace_s = 3) six single-instance
# applications are deployed, the first three while c2's cluster manager is
# stopped (so c1 surely has work to lose), the others with both clusters
# up; then all traffic between the root and c1 is dropped (tb_cut root
# c1). It asserts:
#   - the workloads on c1's workers keep running throughout: the same
#     containers with the same init pids;
#   - once the root has noticed the loss and its grace period is over, the
#     instances of c1 are placed on c2 and RUNNING there;
#   - after the link is restored (tb_heal) the old copies on c1 are removed:
#     in the end every instance runs exactly once (the root's view and the
#     containers on all workers agree one to one, no orphans), and the
#     copies on c2 are the same containers as during the cut.
#
# Usage: OAK_BUILD_DIR=build/san test/e2e/s5_cluster_partition_test.sh
# (run as root; test/run.sh sets the environment).
set -euo pipefail

cd "$(dirname "$0")/../.."
. test/e2e/lib/testbed.sh
. test/e2e/lib/scenario45.sh

INSTANCES=6

tb_setup --workers-per-cluster 2
T0=$SECONDS
WORK=$TB_DIR/s5
mkdir -p "$WORK"

# cluster_active NAME: true/false as the root sees it
cluster_active()
{
    tb_api GET /api/clusters/ | jq -r --arg n "$1" '.[] | select(.cluster_name == $n) | .active'
}
deploy()
{
    local i=$1 code
    s45_write_sla "$WORK/a$i.json" "s5a$i" 1
    code=$(s45_post_app "$WORK/a$i.json" | cut -d" " -f1)
    [ "$code" = 200 ] || tb_fail "deploying s5a$i: HTTP $code"
}

# The root spreads instances by free capacity, which includes the workers'
# CPU load: to be sure c1 has work to lose, half of the applications are
# deployed while c2's cluster manager is down, the other half with both.
tb_stop c2
deadline=$((SECONDS + 15))
until [ "$(cluster_active c2)" = false ]; do
    [ $SECONDS -lt $deadline ] || tb_fail "the root still counts c2 active 15 s after it stopped"
    sleep 0.2
done
for ((i = 0; i < INSTANCES / 2; i++)); do deploy $i; done
tb_start c2
deadline=$((SECONDS + 15))
until [ "$(cluster_active c2)" = true ]; do
    [ $SECONDS -lt $deadline ] || tb_fail "c2 did not become active again at the root"
    sleep 0.2
done
for ((i = INSTANCES / 2; i < INSTANCES; i++)); do deploy $i; done
s45_wait_exactly_once 30 || tb_fail "the $INSTANCES instances did not come up"
before=$(s45_root_instances)
on_c1=$(awk '$5 == "c1"' <<<"$before" | wc -l)
on_c2=$(awk '$5 == "c2"' <<<"$before" | wc -l)
tb_log "placed: $on_c1 instance(s) on c1, $on_c2 on c2"
[ "$on_c1" -ge 1 ] || tb_fail "the root put no instance on c1; nothing to test ($before)"
tb_pass "$INSTANCES instances RUNNING exactly once, $on_c1 on c1 and $on_c2 on c2"

# "host id pid" of the containers on c1's workers (w1*), on c2's (w2*)
c1_containers() { s45_container_pids | awk '$1 ~ /^w1/' | sort; }
c2_containers() { s45_container_pids | awk '$1 !~ /^w1/' | sort; }
c1_before=$(c1_containers)
tb_log "containers on c1's workers (host id pid):"
printf '    %s\n' "${c1_before//$'\n'/$'\n    '}" >&2
[ "$(grep -c . <<<"$c1_before")" = "$on_c1" ] ||
    tb_fail "c1's workers run $(grep -c . <<<"$c1_before") containers, the root places $on_c1 there"

# c1's containers: same ids, same pids, all running
c1_unchanged()
{
    local now stopped
    now=$(c1_containers)
    [ "$now" = "$c1_before" ] || { echo "now: $now"; return 1; }
    stopped=$(s45_worker_containers | awk '$1 ~ /^w1/ && $4 != "running"')
    [ -z "$stopped" ] || { echo "not running: $stopped"; return 1; }
}

# ---- the cut ----
tb_cut root c1
t_cut=$SECONDS

# moved: every instance RUNNING, none of them on c1 any more
moved()
{
    local inst
    inst=$(s45_root_instances) || return 1
    [ "$(grep -c . <<<"$inst")" = "$INSTANCES" ] || return 1
    [ "$(awk '$4 == "RUNNING" && $5 == "c2"' <<<"$inst" | wc -l)" = "$INSTANCES" ]
}
deadline=$((SECONDS + 45))
until moved; do
    out=$(c1_unchanged) || tb_fail "c1's workloads changed while cut off: $out"
    if [ $SECONDS -ge $deadline ]; then
        s45_root_instances >&2 || true
        tb_api GET /api/clusters/ | jq -c '.[] | {cluster_name, active, connected, last_seen}' >&2
        tb_fail "the root did not move c1's instances to c2 within 45 s of the cut"
    fi
    sleep 0.5
done
tb_log "c1's instances RUNNING on c2 $((SECONDS - t_cut)) s after the cut"
tb_pass "after the grace period the root placed c1's $on_c1 instance(s) on c2, RUNNING"

out=$(c1_unchanged) || tb_fail "c1's workloads changed while cut off: $out"
tb_pass "c1's workloads kept running while cut off (same containers, same pids)"

# the copies on c2 (the ones that must survive the heal)
during=$(s45_root_instances)
c2_during=$(c2_containers)

# ---- heal ----
tb_heal root c1
t_heal=$SECONDS
if ! s45_wait_exactly_once 45; then
    tb_api GET /api/clusters/ | jq -c '.[] | {cluster_name, active, connected, pending_commands}' >&2
    tb_fail "duplicates not removed within 45 s after the link returned"
fi
tb_log "exactly once again $((SECONDS - t_heal)) s after the heal"

after=$(s45_root_instances)
[ "$(grep -c . <<<"$after")" = "$INSTANCES" ] ||
    tb_fail "the root has $(grep -c . <<<"$after") instances, expected $INSTANCES"
[ "$(awk '{print $1, $2, $3, $4, $5, $6}' <<<"$after" | sort)" = "$(awk '{print $1, $2, $3, $4, $5, $6}' <<<"$during" | sort)" ] ||
    tb_fail "the root's placements changed after the heal: during: $during after: $after"
c2_after=$(c2_containers)
[ "$c2_after" = "$c2_during" ] ||
    tb_fail "c2's containers changed after the heal: during: $c2_during after: $c2_after"
c1_left=$(c1_containers)
[ -z "$c1_left" ] || tb_fail "containers left on c1's workers: $c1_left"
tb_pass "after the heal the old copies on c1 are gone; every instance runs exactly once (root and containers agree)"
tb_pass "scenario 5 in $((SECONDS - T0)) s after set-up"
