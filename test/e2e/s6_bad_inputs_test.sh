#!/usr/bin/env bash
# End-to-end scenario 6: bad inputs from outside, on the multi-host testbed
# (test/e2e/lib/testbed.sh).
#   - every SLA of $OAK_SHARED_DIR/testdata/sla/invalid/ -> 422 (400 for the
#     one that is not JSON) with every offending field named by its path, and
#     no application or service created;
#   - a service whose image does not exist -> its instance FAILED with a
#     reason naming the image; no container anywhere;
#   - a node engine started on a worker host with a wrong worker token ->
#     exits with status 1 and a clear message, and never appears at the
#     cluster (no worker, no broker client) nor at the root;
#   - forged MQTT publishes at cluster c1's broker, against a service
#     running on w11: without credentials, with a wrong password, with w12's
#     credentials under another client id (all refused at connect); with
#     w12's credentials publishing as w11 (a FAILED job report, an offline
#     status) and on control topics (a delete for w11's instance, a deploy
#     for w12) -> dropped by the broker; w12 reporting w11's instance as
#     FAILED on its own topic (let through by the broker) -> ignored by the
#     cluster: the instance stays RUNNING at the root in the same container,
#     w11 is never marked offline, nothing is deployed.
# Usage: OAK_BUILD_DIR=build/san test/e2e/s6_bad_inputs_test.sh (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/e2e/lib/testbed.sh

SHARED=${OAK_SHARED_DIR:-$(cd .. && pwd)/shared}
INVALID=$SHARED/testdata/sla/invalid

# fields each invalid SLA must name (README.md of the test data)
declare -A FIELDS=(
    [bad-name.json]="applications[0].application_name applications[0].microservices[0].microservice_name"
    [old-version.json]="sla_version"
    [wrong-types.json]="applications[0].microservices[0].memory applications[0].microservices[0].vcpus applications[0].microservices[0].cmd"
    [missing-code.json]="applications[0].microservices[0].code"
    [truncated.json]=""
)

counts() { echo "$(tb_api GET /api/applications/ | jq length) apps, $(tb_api GET /api/services/ | jq length) services"; }

tb_setup
T0=$SECONDS

# ---- invalid SLAs
BEFORE=$(counts)
n=0
for f in "$INVALID"/*.json; do
    name=$(basename "$f")
    [ -n "${FIELDS[$name]+x}" ] || tb_fail "no expectation for $name (new file in $INVALID?)"
    body=$(tb_api POST /api/application/ "@$f")
    want=422
    [ "$name" = truncated.json ] && want=400
    tb_assert_eq "$name is refused" "$want" "$(tb_http_status)"
    for field in ${FIELDS[$name]}; do
        tb_assert "$name: the error names $field" \
            jq -e --arg f "$field" '[.errors[]?.field] | index($f) != null' <<<"$body" >/dev/null
    done
    if [ "$want" = 400 ]; then
        tb_assert_eq "$name: error code" invalid_request "$(jq -r .error <<<"$body")"
    else
        tb_assert_eq "$name: error code" validation_failed "$(jq -r .error <<<"$body")"
    fi
    n=$((n + 1))
done
tb_assert_eq "nothing was created" "$BEFORE" "$(counts)"
tb_pass "$n invalid SLAs refused with 4xx naming every offending field; nothing created"

# ---- an image that does not exist
MISSING=$TB_REGISTRY/test/no-such-image:v1
read -r _ GHOST <<<"$(tb_deploy - <<<"$(jq -n --arg img "$MISSING" '{
    sla_version: "v2.0", customerID: "Admin",
    applications: [{applicationID: "", application_name: "ghost", application_namespace: "e2e",
        application_desc: "", microservices: [{microserviceID: "", microservice_name: "ghost",
        microservice_namespace: "e2e", virtualization: "container", code: $img,
        cmd: ["sleep", "3600"], memory: 16, vcpus: 0}]}]}')")"
[ -n "$GHOST" ] || tb_fail "deploy of the unknown image returned no service"
tb_api POST "/api/service/$GHOST/instance" >/dev/null
tb_assert_eq "request an instance of the unknown image" 200 "$TB_HTTP_STATUS"
# the cluster retries it on other workers (max_restarts 2) before it stays
# FAILED: wait for a FAILED whose reason names the image, then for it to stay
ghost() { tb_api GET "/api/service/$GHOST" | jq -r '.instance_list[0] | "\(.status) \(.status_detail)"'; }
failed_for_image() { [[ $(ghost) == "FAILED "*no-such-image* ]]; }
tb__wait "the instance FAILED with a reason naming the image" 30 failed_for_image ||
    tb_fail "the instance of the unknown image is not FAILED with a reason: $(ghost)"
sleep 3
DETAIL=$(ghost)
tb_assert "it stays FAILED with the reason ($DETAIL)" failed_for_image
DETAIL=${DETAIL#FAILED }
for h in $TB_HOSTS; do
    tb_assert_eq "no container of the unknown image on $h" "" "$(tb_containers "$h" | grep "^$GHOST-" || true)"
done
tb_pass "unknown image: instance FAILED ($DETAIL)"

# ---- a worker with a wrong token
IDIR=$TB_DIR/intruder
mkdir -p "$IDIR"
mapfile -t ENVS < <(tb__ne_env w12 | sed -e "s|^OAK_WORKER_TOKEN=.*|OAK_WORKER_TOKEN=not-the-worker-token|" \
    -e "s|^OAK_NODE_NAME=.*|OAK_NODE_NAME=intruder|" -e "s|^OAK_STATE_DIR=.*|OAK_STATE_DIR=$IDIR/state|" \
    -e "s|^OAK_RUNC_ROOT=.*|OAK_RUNC_ROOT=$TB_RUN/runc/intruder|" \
    -e "s|^OAK_CGROUP_PARENT=.*|OAK_CGROUP_PARENT=oakt-intruder|")
CLIENTS=$(grep -c 'createClient' "$TB_DIR/c1/mqtt/mosquitto.log" || true)
st=0
timeout 30 nsenter --net=/run/netns/oakt-w12 --mount="$TB_RUN/mnt/w12" -- \
    env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY "${ENVS[@]}" \
    "$TB_BIN/node-engine" >"$IDIR/daemon.log" 2>&1 || st=$?
tb_assert_eq "the node engine with a wrong token exits with status" 1 "$st"
tb_log "its last words: $(grep -v '^$' "$IDIR/daemon.log" | tail -n 1)"
tb_assert "it says the cluster refused the token" grep -qiE "token|401|unauthori" "$IDIR/daemon.log"
tb_assert "no sanitizer report" bash -c "! grep -qE 'Sanitizer|runtime error:' '$IDIR/daemon.log'"
tb_assert "the cluster never registered it" bash -c "! grep -q 'intruder' '$TB_DIR/c1/daemon.log'"
tb_assert_eq "no new broker client" "$CLIENTS" "$(grep -c 'createClient' "$TB_DIR/c1/mqtt/mosquitto.log" || true)"
tb_assert_eq "c1 still has 2 workers at the root" 2 \
    "$(tb_api GET /api/clusters/ | jq '.[] | select(.cluster_name == "c1") | .capacity.active_workers')"
tb_pass "a worker with a wrong token is refused (exit 1: '$(grep -oiE 'refused the worker token.*' "$IDIR/daemon.log" | head -n 1 | cut -c1-60)...') and never appears"

# ---- forged MQTT publishes
read -r _ VICTIM <<<"$(tb_deploy - <<<"$(jq -n '{
    sla_version: "v2.0", customerID: "Admin",
    applications: [{applicationID: "", application_name: "victim", application_namespace: "e2e",
        application_desc: "", microservices: [{microserviceID: "", microservice_name: "victim",
        microservice_namespace: "e2e", virtualization: "container", code: "busybox",
        cmd: ["sleep", "3600"], memory: 16, vcpus: 0, replicas: 1,
        constraints: [{type: "direct", cluster: "c1", node: "w11"}]}]}]}')")"
[ -n "$VICTIM" ] || tb_fail "deploy of the victim returned no service"
tb_wait_instances "$VICTIM" 1 RUNNING 30
CID=$(tb_running w11 | grep "^$VICTIM-0-") || tb_fail "the victim does not run on w11"
PID=$(runc --root "$TB_RUN/runc/w11" state "$CID" | jq -r .pid)
W11=$(tb_node_id w11)
W12=$(tb_node_id w12)
W12PW=$(jq -r .mqtt_password "$TB_DIR/w12/state/node.json")
BROKER=(-h "$(tb_ip c1)" -p $TB_MQTT_PORT -q 1)
W12_BEFORE=$(tb_containers w12 | wc -l)
OFFLINE_BEFORE=$(grep -c "worker w11 .* is offline" "$TB_DIR/c1/daemon.log" || true)

# pub DESCRIPTION EXPECT ARGS...: mosquitto_pub (MQTT 5, QoS 1) from w12's
# host; EXPECT is refused (CONNACK: not authorised), denied (PUBACK reason
# 0x87: the broker drops the message) or allowed (PUBACK reason 0).
pub()
{
    local what=$1 expect=$2 out st=0 ok=0
    shift 2
    out=$(tb_exec w12 timeout 10 mosquitto_pub -V 5 -d "${BROKER[@]}" "$@" 2>&1) || st=$?
    case $expect in
    refused) [ "$st" != 0 ] && grep -q "received CONNACK (135)" <<<"$out" && ok=1 ;;
    denied) grep -q "received PUBACK (Mid: 1, RC:135)" <<<"$out" && ok=1 ;;
    allowed) [ "$st" = 0 ] && grep -q "received PUBACK (Mid: 1, RC:0)" <<<"$out" && ok=1 ;;
    esac
    if [ "$ok" != 1 ]; then
        echo "$out" | sed 's/^/    | /' >&2
        tb_fail "$what: expected the broker to answer '$expect' (mosquitto_pub exit $st)"
    fi
    echo "  ok: $what: $expect by the broker" >&2
}
FAILED_JOB=$(jq -nc --arg s "$VICTIM" '{service_id: $s, instance_number: 0, generation: 1,
    status: "FAILED", status_detail: "forged"}')
pub "w12 publishes its own status (control)" allowed -i "$W12" -u "$W12" -P "$W12PW" \
    -t "nodes/$W12/status" -m '{"status":"online"}'
pub "no credentials" refused -i forger -t "nodes/$W11/status" -m '{"status":"offline"}'
pub "w11's id with a wrong password" refused -i "$W11" -u "$W11" -P wrong-password \
    -t "nodes/$W11/job" -m "$FAILED_JOB"
pub "w12's credentials under another client id" refused -i forger -u "$W12" -P "$W12PW" \
    -t "nodes/$W11/status" -m '{"status":"offline"}'
pub "w12 reports a job of w11" denied -i "$W12" -u "$W12" -P "$W12PW" -t "nodes/$W11/job" -m "$FAILED_JOB"
pub "w12 says w11 is offline" denied -i "$W12" -u "$W12" -P "$W12PW" -t "nodes/$W11/status" \
    -m '{"status":"offline"}'
pub "w12 sends w11 a delete" denied -i "$W12" -u "$W12" -P "$W12PW" -t "nodes/$W11/control/delete" \
    -m "$(jq -nc --arg s "$VICTIM" '{service_id: $s, instance_number: 0, generation: 1}')"
pub "w12 sends itself a deploy" denied -i "$W12" -u "$W12" -P "$W12PW" -t "nodes/$W12/control/deploy" \
    -m "$(jq -nc --arg s "$VICTIM" --arg img "$TB_IMAGE" '{service_id: $s, instance_number: 7,
        generation: 1, job_name: "e2e.victim.e2e", image: $img, virtualization: "container",
        cmd: ["sleep", "3600"], service: {}}')"
# what the broker lets through must still be judged by the cluster: w12
# claims, on its own topic, that w11's instance failed on it
pub "w12 reports w11's instance as its own, FAILED" allowed -i "$W12" -u "$W12" -P "$W12PW" \
    -t "nodes/$W12/job" -m "$FAILED_JOB"
sleep 3 # let anything that got through take effect
tb_assert_eq "the victim's status at the root" "0 RUNNING" "$(tb_instances "$VICTIM" | awk '{print $1, $2}')"
tb_assert_eq "the victim's container on w11" "$CID" "$(tb_running w11 | grep "^$VICTIM-" || true)"
tb_assert_eq "the same process runs it" "$PID" "$(runc --root "$TB_RUN/runc/w11" state "$CID" | jq -r .pid)"
tb_assert_eq "w11 was never marked offline" "$OFFLINE_BEFORE" "$(grep -c "worker w11 .* is offline" "$TB_DIR/c1/daemon.log" || true)"
tb_assert_eq "nothing deployed on w12" "$W12_BEFORE" "$(tb_containers w12 | wc -l)"
tb_assert "w11 got no forged command" bash -c "! grep -q '$VICTIM-7\\|$VICTIM-0 generation 1: UNDEPLOYED' '$TB_DIR/w11/daemon.log' '$TB_DIR/w12/daemon.log'"
# w12's own session was taken over by the forger: it must be back
back() { [ "$(tb_api GET /api/clusters/ | jq '.[] | select(.cluster_name == "c1") | .capacity.active_workers')" = 2 ]; }
tb__wait "w12 back online" 15 back || tb_fail "w12 did not come back after its session was taken over"
tb_pass "forged MQTT publishes refused or dropped: no state change ($((SECONDS - T0))s after setup)"
