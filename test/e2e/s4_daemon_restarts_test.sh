#!/usr/bin/env bash
# End-to-end scenario 4: daemons killed (SIGKILL) and restarted in the
# middle of a burst of deployments.
#
# On the network-namespace testbed (test/e2e/lib/testbed.sh) three bursts of
# small applications (1-3 microservices of 1-2 replicas each, busybox from
# the local registry) are deployed through the REST API, one call after the
# other; during the first burst the system-manager is killed and restarted,
# during the second a cluster-manager, during the third a node-engine, each
# at a random point of the burst. Then it asserts:
#   - every application the API acknowledged exists once, each of its
#     services with exactly its replicas, all RUNNING at the root;
#   - a deployment whose call failed (root down, or killed while answering)
#     either does not exist at all or is complete (never a half state);
#     nothing the test did not ask for exists;
#   - the runc containers on the workers match the root's instances one to
#     one: each instance runs exactly once, on the worker the root names, in
#     the generation the root names, no orphan containers.
# The kill points come from a seed printed at the start; replay a run with
# OAK_E2E_SEED=<seed> (the points are "during call k + d ms", so a replay
# hits the same call, not necessarily the same instruction).
#
# Usage: OAK_BUILD_DIR=build/san test/e2e/s4_daemon_restarts_test.sh
# (run as root; test/run.sh sets the environment).
set -euo pipefail

cd "$(dirname "$0")/../.."
. test/e2e/lib/testbed.sh
. test/e2e/lib/scenario45.sh

BURST=${S4_BURST:-7} # deployment calls per burst
SETTLE_S=50

# The testbed's root gives up on a silent cluster after 3 + 3 s; a cluster
# manager can take longer than that to reconnect after the root restarted
# (its reconnect backoff), and this scenario is about restarts, not about
# lost clusters (scenario 5): a grace period well above the reconnect time.
export TB_ROOT_ENV="OAK_CLUSTER_GRACE_S=20 ${TB_ROOT_ENV:-}"

s45_seed
tb_setup --workers-per-cluster 2
T0=$SECONDS

WORK=$TB_DIR/s4
mkdir -p "$WORK"
RESULTS=$WORK/results # "app services replicas http_status ms" per deployment call
STARTED=$WORK/started # one line per deployment call begun
: >"$RESULTS"
: >"$STARTED"

# deployer PLAN: the deployments of PLAN ("app services replicas pause_ms"
# lines), one after the other, each call's outcome appended to $RESULTS.
# Runs in the background (a subshell reseeds $RANDOM, so the plan is drawn
# before).
deployer()
{
    local app nsvc reps pause code
    while read -r app nsvc reps pause; do
        s45_write_sla "$WORK/$app.json" "$app" "$reps" "$nsvc"
        tb_sla "$WORK/$app.json" >"$WORK/$app.mapped.json"
        echo "$app" >>"$STARTED"
        code=$(s45_post_json "$WORK/$app.mapped.json")
        echo "$app $nsvc $reps $code" >>"$RESULTS"
        sleep "0.$(printf %03d "$pause")"
    done <<<"$plan"
}

# burst PHASE HOST: deploys BURST applications; D ms after call K began,
# kills HOST with SIGKILL, then restarts it after DOWN ms (K, D, DOWN
# random; D mostly below a call's duration, so the kill tends to hit the
# root while it handles a call). HOST "worker" means the worker running
# the most containers when the burst starts (the cluster scheduler packs,
# so a random one would often be idle).
burst()
{
    local phase=$1 host=$2 i
    # all random numbers are drawn here, so the seed decides them
    local k=$((2 + RANDOM % (BURST - 3))) d=$((RANDOM % 15)) down=$((RANDOM % 1500))
    plan=""
    for ((i = 0; i < BURST; i++)); do
        plan+="s4p${phase}a$i $((1 + RANDOM % 3)) $((1 + RANDOM % 2)) $((RANDOM % 40))"$'\n'
    done
    plan=${plan%$'\n'}
    if [ "$host" = worker ]; then
        host=$(for h in $TB_HOSTS; do echo "$(tb_containers "$h" | grep -c . || true) $h"; done |
            sort -k1,1nr -k2,2 | head -1 | cut -d" " -f2)
        tb_log "the busiest worker is $host ($(tb_containers "$host" | grep -c . || true) containers)"
    fi
    tb_log "burst $phase: $BURST deployments; kill -9 $host ${d} ms after call $k began, restart after ${down} ms down"
    local base
    base=$(grep -c . "$STARTED" || true)
    deployer &
    local dpid=$!
    while [ "$(grep -c . "$STARTED" || true)" -lt $((base + k)) ]; do
        kill -0 "$dpid" 2>/dev/null || break
        sleep 0.005
    done
    sleep "0.$(printf %03d "$d")"
    tb_kill9 "$host"
    sleep "$((down / 1000)).$(printf %03d $((down % 1000)))"
    tb_start "$host"
    wait "$dpid"
}

burst 1 root
# a cluster-manager chosen by the seed, then the busiest node-engine
clusters=(c1 c2)
burst 2 "${clusters[RANDOM % 2]}"
burst 3 worker

tb_log "deployment calls (app services replicas http_status ms):"
sed 's/^/    /' "$RESULTS" >&2
acked=$(awk '$4 == 200' "$RESULTS" | wc -l)
tb_log "$acked of $((3 * BURST)) deployment calls acknowledged; waiting for the system to settle"

# complete APP NSVC REPS: true when the root has application APP once, with
# NSVC services of REPS instances each, all RUNNING ($svcs, $apps).
complete()
{
    local app=$1 nsvc=$2 reps=$3
    [ "$(jq --arg a "$app" '[.[] | select(.application_name == $a)] | length' <<<"$apps")" = 1 ] &&
        [ "$(awk -v a="$app" -v r="$reps" '$2 == a && $4 == r && $5 == r' <<<"$svcs" | wc -l)" = "$nsvc" ] &&
        [ "$(awk -v a="$app" '$2 == a' <<<"$svcs" | wc -l)" = "$nsvc" ]
}
absent()
{
    local app=$1
    [ "$(jq --arg a "$app" '[.[] | select(.application_name == $a)] | length' <<<"$apps")" = 0 ] &&
        [ "$(awk -v a="$app" '$2 == a' <<<"$svcs" | wc -l)" = 0 ]
}
snapshot()
{
    svcs=$(s45_root_services) && apps=$(tb_api GET /api/applications/) &&
        [ "$(tb_http_status)" = 200 ]
}

# settled: every acknowledged deployment complete, every failed one absent
# or complete, and instances and containers match one to one
settled()
{
    snapshot || return 1
    local app nsvc reps code ms
    while read -r app nsvc reps code ms; do
        if [ "$code" = 200 ]; then
            complete "$app" "$nsvc" "$reps" || return 1
        else
            complete "$app" "$nsvc" "$reps" || absent "$app" || return 1
        fi
    done <"$RESULTS"
    s45_exactly_once >/dev/null
}
deadline=$((SECONDS + SETTLE_S))
until settled; do
    if [ $SECONDS -ge $deadline ]; then
        tb_log "not settled within $SETTLE_S s"
        break
    fi
    sleep 0.5
done
[ $SECONDS -ge $deadline ] || tb_log "settled $((SECONDS - T0)) s after set-up"

# ---- assertions ----
snapshot || tb_fail "the root API does not answer"
fail=0
while read -r app nsvc reps code ms; do
    if [ "$code" = 200 ]; then
        complete "$app" "$nsvc" "$reps" && continue
        echo "FAIL: acknowledged $app ($nsvc services x $reps replicas) is not complete:" >&2
    elif absent "$app"; then
        tb_log "failed call $app (http $code) left nothing behind"
        continue
    elif complete "$app" "$nsvc" "$reps"; then
        tb_log "failed call $app (http $code) was applied completely"
        continue
    else
        echo "FAIL: failed call $app (http $code, $nsvc services x $reps replicas) left a half state:" >&2
    fi
    jq -c --arg a "$app" '.[] | select(.application_name == $a) | {_id, microservices}' <<<"$apps" >&2
    awk -v a="$app" '$2 == a {print "    service " $1 " " $3 ": " $4 " instance(s), " $5 " RUNNING"}' <<<"$svcs" >&2
    fail=1
done <"$RESULTS"
[ $fail = 0 ] || tb_fail "deployments lost or incomplete (seed $S45_SEED)"
tb_pass "every acknowledged deployment has all its services with exactly their replicas RUNNING at the root"
tb_pass "every failed deployment call left nothing or a complete application"

extra=$(jq -r '.[].application_name' <<<"$apps" | sort | uniq -c |
    awk -v f="$RESULTS" 'BEGIN { while ((getline l < f) > 0) { split(l, p, " "); want[p[1]] = 1 } }
        !($2 in want) || $1 != 1 { print }')
[ -z "$extra" ] || tb_fail "applications the test did not request (or twice): $extra"
orphans=$(awk '{print $2}' <<<"$svcs" | sort -u | grep -vxF -f <(jq -r '.[].application_name' <<<"$apps") || true)
[ -z "$orphans" ] || tb_fail "services of applications that do not exist: $orphans"
tb_pass "no unexpected, duplicated or orphaned applications and services"

if ! mismatch=$(s45_exactly_once); then
    printf '    %s\n' "${mismatch//$'\n'/$'\n    '}" >&2
    tb_fail "instances and containers do not match one to one (seed $S45_SEED)"
fi
n=$(s45_root_instances | grep -c . || true)
tb_pass "$n instances RUNNING exactly once across the workers, no orphan containers"
tb_pass "scenario 4 in $((SECONDS - T0)) s after set-up (seed $S45_SEED)"
