#!/usr/bin/env bash
# End-to-end scenario 2: placement constraints and capacity on the
# multi-host testbed (test/e2e/lib/testbed.sh), whose cluster c1 has two
# workers of $TB_MEM_C1 MB (2048) and cluster c2 two of $TB_MEM_C2 MB (8192).
#   - $OAK_SHARED_DIR/testdata/sla/valid/direct-oneshot.json with its
#     `direct` constraint mapped to cluster c2 / node w21 (and its cmd to a
#     shell printing its environment): COMPLETED on w21, whose container log
#     shows the SLA's environment;
#   - long-running services pinned with `direct` to c1/w12, to c2/w22 and to
#     c1 with the node list "w11;w12" (2 replicas): each RUNNING exactly where
#     its constraint says, and runc runs it on that worker;
#   - a `direct` constraint naming an unknown cluster -> TargetClusterNotFound;
#     one naming c1 for a service bigger than c1 -> TargetClusterNoCapacity;
#     one naming a node of c2 inside c1 -> never placed; none of them leaves
#     a container anywhere;
#   - a service too big for c1 (6000 MB, 2 replicas) and no constraint lands
#     on c2, one replica per worker (a worker holds only one).
# Usage: OAK_BUILD_DIR=build/san test/e2e/s2_constraints_test.sh (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/e2e/lib/testbed.sh

SHARED=${OAK_SHARED_DIR:-$(cd .. && pwd)/shared}

# sla APP_NAME SERVICES_JSON: an SLA with the given microservices (each an
# object with at least microservice_name; defaults filled in).
sla()
{
    jq -n --arg app "$1" --argjson svcs "$2" '{
        sla_version: "v2.0", customerID: "Admin",
        applications: [{applicationID: "", application_name: $app, application_namespace: "e2e",
            application_desc: "scenario 2", microservices: [$svcs[] | {
                microserviceID: "", microservice_namespace: "e2e", virtualization: "container",
                code: "docker.io/library/busybox:latest", cmd: ["sleep", "3600"],
                memory: 16, vcpus: 0} + .]}]}'
}

# where SERVICE N: "cluster_name host" of instance N according to the root
where()
{
    local line cid node cname
    line=$(tb_instances "$1" | awk -v n="$2" '$1 == n')
    cid=$(awk '{print $3}' <<<"$line")
    node=$(awk '{print $4}' <<<"$line")
    cname=$(tb_api GET /api/clusters/ | jq -r --arg id "$cid" '.[] | select(._id == $id) | .cluster_name')
    echo "${cname:-?} $(tb_node_host "$node")"
}

# on_worker HOST SERVICE N: runc runs instance N of SERVICE on HOST
on_worker() { tb_containers "$1" | grep -q "^$2-$3-"; }

containers_of()
{
    local h
    for h in $TB_HOSTS; do tb_containers "$h" | grep "^$1-" | sed "s/^/$h /" || true; done
}

tb_setup
T0=$SECONDS

# ---- the shared one-shot SLA, pinned to c2 / w21
ONESHOT=$TB_DIR/direct-oneshot.json
jq '.applications[0].microservices[0] |= (.constraints = [{type: "direct", cluster: "c2", node: "w21"}]
        | .cmd = ["sh", "-c", "echo report MODE=$MODE VERBOSE=$VERBOSE on $(hostname)"])' \
    "$SHARED/testdata/sla/valid/direct-oneshot.json" >"$ONESHOT"
read -r _ REPORT <<<"$(tb_deploy "$ONESHOT")"
[ -n "$REPORT" ] || tb_fail "deploy of direct-oneshot.json returned no service"
tb_api POST "/api/service/$REPORT/instance" >/dev/null
tb_assert_eq "request the one-shot instance" 200 "$TB_HTTP_STATUS"
tb_wait_instances "$REPORT" 1 COMPLETED 30
tb_assert_eq "one-shot placed on" "c2 w21" "$(where "$REPORT" 0)"
LOG=$(cat "$TB_DIR"/w21/state/containers/"$REPORT"-0-*/log 2>/dev/null || true)
tb_assert "the one-shot ran on w21 with the SLA's environment (log: '$LOG')" \
    grep -q "report MODE=nightly VERBOSE=1" <<<"$LOG"
for h in w11 w12 w22; do
    tb_assert "no trace of the one-shot on $h" test -z "$(ls -d "$TB_DIR/$h/state/containers/$REPORT"-* 2>/dev/null)"
done
tb_pass "direct-oneshot.json (mapped to c2/w21): COMPLETED on w21 with its environment"

# ---- long-running services pinned to workers
read -r _ PIN12 PIN22 PINLIST <<<"$(tb_deploy - <<<"$(sla pinned '[
    {"microservice_name": "pin12", "constraints": [{"type": "direct", "cluster": "c1", "node": "w12"}]},
    {"microservice_name": "pin22", "constraints": [{"type": "direct", "cluster": "c2", "node": "w22"}]},
    {"microservice_name": "pinlist", "replicas": 2,
     "constraints": [{"type": "direct", "cluster": "c1", "node": "w11;w12"}]}]')")"
[ -n "$PINLIST" ] || tb_fail "deploy of the pinned services returned too few services"
tb_api POST "/api/service/$PIN12/instance" >/dev/null
tb_api POST "/api/service/$PIN22/instance" >/dev/null
tb_wait_instances "$PIN12" 1 RUNNING 30
tb_wait_instances "$PIN22" 1 RUNNING 30
tb_wait_instances "$PINLIST" 2 RUNNING 30
tb_assert_eq "pin12 placed on" "c1 w12" "$(where "$PIN12" 0)"
tb_assert "runc runs pin12 on w12" on_worker w12 "$PIN12" 0
tb_assert_eq "pin22 placed on" "c2 w22" "$(where "$PIN22" 0)"
tb_assert "runc runs pin22 on w22" on_worker w22 "$PIN22" 0
for n in $(tb_instances "$PINLIST" | awk '{print $1}'); do
    w=$(where "$PINLIST" "$n")
    [[ $w == "c1 w11" || $w == "c1 w12" ]] || tb_fail "pinlist/$n placed on '$w', not c1 w11/w12"
    tb_assert "runc runs pinlist/$n on ${w#c1 }" on_worker "${w#c1 }" "$PINLIST" "$n"
done
tb_assert_eq "containers of pin12 anywhere" 1 "$(containers_of "$PIN12" | wc -l)"
tb_assert_eq "containers of pin22 anywhere" 1 "$(containers_of "$PIN22" | wc -l)"
tb_assert_eq "containers of pinlist anywhere" 2 "$(containers_of "$PINLIST" | wc -l)"
tb_pass "direct constraints: c1/w12, c2/w22 and c1/'w11;w12' land where they say"

# ---- constraints that cannot be met
read -r _ NOCL BIGC1 WRONGNODE <<<"$(tb_deploy - <<<"$(sla impossible '[
    {"microservice_name": "nocluster", "constraints": [{"type": "direct", "cluster": "nowhere"}]},
    {"microservice_name": "bigonc1", "memory": 6000, "constraints": [{"type": "direct", "cluster": "c1"}]},
    {"microservice_name": "wrongnode", "constraints": [{"type": "direct", "cluster": "c1", "node": "w21"}]}]')")"
[ -n "$WRONGNODE" ] || tb_fail "deploy of the impossible services returned too few services"
for s in "$NOCL" "$BIGC1" "$WRONGNODE"; do
    tb_api POST "/api/service/$s/instance" >/dev/null
    tb_assert_eq "request an instance of $s" 200 "$TB_HTTP_STATUS"
done
tb_wait_instances "$NOCL" 1 TargetClusterNotFound 15
tb_wait_instances "$BIGC1" 1 TargetClusterNoCapacity 15
DETAIL=$(tb_api GET "/api/service/$BIGC1" | jq -r '.instance_list[0].status_detail')
tb_assert "the detail names c1's capacity ($DETAIL)" grep -q "c1" <<<"$DETAIL"
# w21 is in c2: c1 has no such worker; give it the cluster's hand-back time
# (2 s) and the root's answer
sleep 4
ST=$(tb_instances "$WRONGNODE" | awk '{print $2}')
case $ST in
RUNNING | CREATED | NODE_SCHEDULED) tb_fail "wrongnode (c1/w21) was placed: $ST" ;;
esac
tb_log "wrongnode (c1/w21) status: $ST ($(tb_api GET "/api/service/$WRONGNODE" | jq -r ".instance_list[0].status_detail"))"
for s in "$NOCL" "$BIGC1" "$WRONGNODE"; do
    tb_assert_eq "containers of $s anywhere" 0 "$(containers_of "$s" | wc -l)"
done
tb_pass "unmet direct constraints: TargetClusterNotFound, TargetClusterNoCapacity, c1/w21 not placed ($ST); nothing runs"

# ---- a service too big for c1 lands on c2
read -r _ BIG <<<"$(tb_deploy - <<<"$(sla big '[{"microservice_name": "big", "memory": 6000, "replicas": 2}]')")"
[ -n "$BIG" ] || tb_fail "deploy of the big service returned no service"
tb_wait_instances "$BIG" 2 RUNNING 30
HOSTS=""
for n in $(tb_instances "$BIG" | awk '{print $1}'); do
    w=$(where "$BIG" "$n")
    [[ $w == "c2 "* ]] || tb_fail "big/$n (6000 MB) placed on '$w', not in c2"
    tb_assert "runc runs big/$n on ${w#c2 }" on_worker "${w#c2 }" "$BIG" "$n"
    HOSTS+="${w#c2 } "
done
tb_assert_eq "one 6000 MB replica per c2 worker" "w21 w22" "$(tr ' ' '\n' <<<"$HOSTS" | sort | xargs)"
tb_pass "capacity: a 6000 MB service (c1 workers have $TB_MEM_C1 MB) runs on c2, one replica per worker ($((SECONDS - T0))s after setup)"
