#!/usr/bin/env bash
# End-to-end scenario 3: a worker fails and its instances move to another
# worker of its cluster within 5 s, on the multi-host testbed
# (test/e2e/lib/testbed.sh; workers send a heartbeat every 1 s, the
# cluster counts a worker silent for 2 s dead).
#   A. a service of 2 replicas in cluster c1: the worker running them dies
#      (SIGKILL to its node-engine and to every container of it) -> every
#      instance RUNNING on the other c1 worker; the time from the kill until
#      the root shows that is measured, printed and must be < 5 s; each
#      instance then runs exactly once (runc) on the worker the root names.
#   B. the same in cluster c2, but the worker's link to its cluster is cut
#      (iptables DROP both ways; its node-engine and containers live on) ->
#      RUNNING on the other c2 worker in < 5 s; the link heals once the
#      broker has dropped the worker's connection: the worker comes back
#      online (it reconnects) and its stale copies are removed, so each
#      instance runs exactly once.
#   C. as B, back the other way, but the link heals right after the failover,
#      before the broker notices anything (it checks keepalives every 5 s):
#      the worker's MQTT connection survives the cut; its stale copies must
#      be removed all the same.
# Usage: OAK_BUILD_DIR=build/san test/e2e/s3_worker_failover_test.sh (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/e2e/lib/testbed.sh

LIMIT_MS=${S3_LIMIT_MS:-5000}
# A cut link is noticed by the cluster's silence timer: mosquitto 2.0.11
# checks keepalives only every 5 s, so the last will comes too late for the
# 5 s budget. Workers send a heartbeat every second; 2 s is the smallest
# worker_dead_s the cluster-manager accepts.
export TB_CLUSTER_ENV="${TB_CLUSTER_ENV:-} OAK_WORKER_DEAD_S=2"

sla()
{
    jq -n --arg app "$1" --arg cluster "$2" '{
        sla_version: "v2.0", customerID: "Admin",
        applications: [{applicationID: "", application_name: $app, application_namespace: "e2e",
            application_desc: "scenario 3", microservices: [{
                microserviceID: "", microservice_name: "svc", microservice_namespace: "e2e",
                virtualization: "container", code: "docker.io/library/busybox:latest",
                cmd: ["sleep", "3600"], memory: 16, vcpus: 0, replicas: 2,
                constraints: [{type: "direct", cluster: $cluster}]}]}]}'
}

# moved SERVICE VICTIM: every instance RUNNING at the root, none on VICTIM
moved()
{
    local p
    p=$(tb_placement "$1")
    [ "$(wc -l <<<"$p")" = 2 ] || return 1
    ! awk -v v="$2" '$2 != "RUNNING" || $4 == v || $4 == "?" {bad = 1} END {exit !bad}' <<<"$p"
}

# exactly_once SERVICE: each instance runs in exactly one running container,
# on the worker the root names
exactly_once()
{
    local h n st c host all=""
    for h in $TB_HOSTS; do
        all+=$(tb_running "$h" | grep "^$1-" | sed "s/^/$h /" || true)$'\n'
    done
    while read -r n st c host; do
        [ "$st" = RUNNING ] || return 1
        [ "$(grep -c " $1-$n-" <<<"$all")" = 1 ] || return 1
        grep -q "^$host $1-$n-" <<<"$all" || return 1
    done < <(tb_placement "$1")
    [ "$(grep -c " $1-" <<<"$all")" = "$(tb_instances "$1" | wc -l)" ]
}

dump()
{
    local h
    tb_placement "$1" | sed 's/^/  root: /' >&2
    for h in $TB_HOSTS; do echo "  $h runs: $(tb_running "$h" | tr '\n' ' ')" >&2; done
}

# failover SERVICE VICTIM WHAT: waits until moved, prints the elapsed ms since
# $KILL_T0 and checks the limit
failover()
{
    local sid=$1 victim=$2 what=$3 ms
    while ! moved "$sid" "$victim"; do
        if (($(tb__ms) - KILL_T0 > 20000)); then
            dump "$sid"
            tb_fail "$what: the instances of $victim did not move within 20 s"
        fi
        sleep 0.05
    done
    ms=$(($(tb__ms) - KILL_T0))
    # when the cluster noticed (its log line's time stamp)
    local c line det="?"
    c=$(tb__cluster_of "$victim")
    line=$(grep "worker $victim (.*) is offline" "$TB_DIR/$c/daemon.log" | tail -n 1 || true)
    [ -n "$line" ] && det=$(($(date -d "${line%% *}" +%s%3N) - KILL_T0))
    tb_log "$what: the cluster declared $victim offline after ${det} ms, instances RUNNING elsewhere at the root after ${ms} ms"
    if ((ms >= LIMIT_MS)); then
        dump "$sid"
        tb_fail "$what: failover took ${ms} ms (limit ${LIMIT_MS} ms)"
    fi
    echo "$ms"
}

tb_setup
T0=$SECONDS

# ---- A: the worker dies
read -r _ SA <<<"$(tb_deploy - <<<"$(sla failkill c1)")"
[ -n "$SA" ] || tb_fail "deploy returned no service"
tb_wait_instances "$SA" 2 RUNNING 30
tb_assert "each instance runs exactly once" exactly_once "$SA"
VICTIM=$(tb_placement "$SA" | awk 'NR == 1 {print $4}')
[[ $VICTIM == w1? ]] || tb_fail "instance 0 is not on a c1 worker: $VICTIM"
BEFORE=$(tb_placement "$SA" | awk -v v="$VICTIM" '$4 == v' | wc -l)
tb_log "victim $VICTIM runs $BEFORE of the 2 instances; killing its node-engine and containers"
KILL_T0=$(tb__ms)
tb_kill9 "$VICTIM"
tb_kill_containers "$VICTIM"
MS_A=$(failover "$SA" "$VICTIM" "worker killed")
tb__wait "each instance running exactly once" 10 exactly_once "$SA" ||
    { dump "$SA"; tb_fail "after the kill an instance does not run exactly once"; }
tb_assert_eq "containers still running on the dead worker" "" "$(tb_running "$VICTIM" | tr '\n' ' ')"
tb_pass "worker $VICTIM killed (node-engine and containers): its $BEFORE instance(s) RUNNING on another c1 worker after ${MS_A} ms (< ${LIMIT_MS} ms)"

# ---- B and C: a worker is cut off from its cluster
read -r _ SB <<<"$(tb_deploy - <<<"$(sla failcut c2)")"
[ -n "$SB" ] || tb_fail "deploy returned no service"
tb_wait_instances "$SB" 2 RUNNING 30
tb_assert "each instance runs exactly once" exactly_once "$SB"

back()
{
    [ "$(tb_api GET /api/clusters/ | jq '.[] | select(.cluster_name == "c2") | .capacity.active_workers')" = 2 ]
}

# cut_off LABEL LONG: cuts the worker running instance 0 of $SB off from c2,
# measures the failover, heals the link (LONG=1: only once the broker has
# dropped the worker's connection, so the worker reconnects; LONG=0: at
# once, the worker's connection survives) and checks the worker is back and
# every instance runs exactly once.
cut_off()
{
    local label=$1 long=$2 victim before ms node t drops
    victim=$(tb_placement "$SB" | awk 'NR == 1 {print $4}')
    [[ $victim == w2? ]] || tb_fail "instance 0 is not on a c2 worker: $victim"
    before=$(tb_placement "$SB" | awk -v v="$victim" '$4 == v' | wc -l)
    node=$(tb_node_id "$victim")
    tb_log "$label: victim $victim runs $before of the 2 instances; cutting it off from c2"
    drops=$(grep -c "Client $node has exceeded timeout" "$TB_DIR/c2/mqtt/mosquitto.log" || true)
    KILL_T0=$(tb__ms)
    tb_cut "$victim" c2
    ms=$(failover "$SB" "$victim" "worker cut off ($label)")
    tb_assert "the cut-off worker's node-engine still runs" tb__alive "$victim"
    tb_pass "worker $victim cut off from c2 ($label): its $before instance(s) RUNNING on another c2 worker after ${ms} ms (< ${LIMIT_MS} ms)"
    if [ "$long" = 1 ]; then
        dropped() { grep -q "Client $node has exceeded timeout" "$TB_DIR/c2/mqtt/mosquitto.log"; }
        tb__wait "the broker to drop $victim's connection" 15 dropped ||
            tb_fail "the broker kept $victim's connection through a 15 s cut"
    fi
    t=$(tb__ms)
    tb_heal "$victim" c2
    if [ "$(grep -c "Client $node has exceeded timeout" "$TB_DIR/c2/mqtt/mosquitto.log" || true)" = "$drops" ]; then
        tb_log "$label: the broker kept $victim's connection through the cut"
    else
        tb_log "$label: the broker dropped $victim's connection during the cut"
    fi
    tb__wait "$victim back online in c2" 20 back || tb_fail "$victim did not come back after the link healed"
    if ! tb__wait "stale copies on $victim removed" 20 exactly_once "$SB"; then
        dump "$SB"
        tb_fail "$label: 20 s after the link healed $victim still runs instances the cluster moved away (they now run twice)"
    fi
    tb_assert "the instances stayed where they moved" moved "$SB" "$victim"
    tb_pass "link healed ($label): $victim back online, its stale copies removed after $(($(tb__ms) - t)) ms, each instance runs exactly once"
}

cut_off "long cut, the broker drops the session" 1
cut_off "short cut, the session survives" 0
tb_log "scenario 3 done $((SECONDS - T0))s after setup"
