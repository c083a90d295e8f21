#!/usr/bin/env bash
# End-to-end scenario 1: the client/server application on the multi-host
# testbed (test/e2e/lib/testbed.sh). Deploys
# $OAK_SHARED_DIR/testdata/sla/valid/clientserver.json (images mapped to the
# local registry's busybox, nginx's empty cmd to `sleep 3600`), requests one
# instance of each service and checks:
#   - every instance RUNNING at the root, each on the worker the root names,
#     where runc runs its container (id <service>-<n>-<generation>) with the
#     SLA's cmd;
#   - scale up (POST /api/service/<id>/instance, replicas 2) -> 3 nginx
#     instances RUNNING, 4 containers in all;
#   - scale down (DELETE /api/service/<id>/instance/<n>) -> that container and
#     its bundle are gone, the others untouched;
#   - undeploy (DELETE /api/application/<id>) -> the application and its
#     services are gone at the root and nothing is left on any worker (no
#     runc container, no bundle directory, no desired-state file).
# Usage: OAK_BUILD_DIR=build/san test/e2e/s1_clientserver_test.sh (as root)
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/e2e/lib/testbed.sh

SHARED=${OAK_SHARED_DIR:-$(cd .. && pwd)/shared}
SLA=$SHARED/testdata/sla/valid/clientserver.json

# every container on every worker, as "host container_id" lines
all_containers()
{
    local h id
    for h in $TB_HOSTS; do
        for id in $(tb_containers "$h"); do echo "$h $id"; done
    done
}

# the worker host running instance N of SERVICE according to the root
host_of()
{
    local node
    node=$(tb_instances "$1" | awk -v n="$2" '$1 == n {print $4}')
    tb_node_host "$node"
}

# check_instance SERVICE N CMD_WORD: the root's worker runs the instance's
# container, and its process runs the SLA's command
check_instance()
{
    local sid=$1 n=$2 word=$3 h id pid
    h=$(host_of "$sid" "$n")
    [ "$h" != "?" ] || tb_fail "instance $sid/$n: the root names no known worker"
    id=$(tb_containers "$h" | grep "^$sid-$n-" || true)
    [ -n "$id" ] || tb_fail "instance $sid/$n: no container on $h (has: $(tb_containers "$h" | tr '\n' ' '))"
    [ "$(runc --root "$TB_RUN/runc/$h" state "$id" | jq -r .status)" = running ] ||
        tb_fail "container $id on $h is not running"
    pid=$(runc --root "$TB_RUN/runc/$h" state "$id" | jq -r .pid)
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$word" ||
        tb_fail "container $id runs '$(tr '\0' ' ' <"/proc/$pid/cmdline")', not '$word'"
    echo "  ok: $sid/$n RUNNING on $h as $id ($(tr '\0' ' ' <"/proc/$pid/cmdline"))" >&2
}

tb_setup
T0=$SECONDS

read -r APP CURL NGINX <<<"$(tb_deploy "$SLA")"
[ -n "$NGINX" ] || tb_fail "deploy did not return two services"
tb_log "application $APP: curl=$CURL nginx=$NGINX"
tb_api POST "/api/service/$CURL/instance" >/dev/null
tb_assert_eq "request curl instance" 200 "$TB_HTTP_STATUS"
tb_api POST "/api/service/$NGINX/instance" >/dev/null
tb_assert_eq "request nginx instance" 200 "$TB_HTTP_STATUS"
tb_wait_instances "$CURL" 1 RUNNING 30
tb_wait_instances "$NGINX" 1 RUNNING 30
check_instance "$CURL" 0 "tail -f /dev/null"
check_instance "$NGINX" 0 "sleep 3600"
tb_assert_eq "containers on the workers" 2 "$(all_containers | wc -l)"
tb_pass "clientserver deployed: every instance RUNNING on the worker the root names"

tb_api POST "/api/service/$NGINX/instance" '{"replicas": 2}' >/dev/null
tb_assert_eq "scale nginx up by 2" 200 "$TB_HTTP_STATUS"
tb_wait_instances "$NGINX" 3 RUNNING 30
for n in $(tb_instances "$NGINX" | awk '{print $1}'); do check_instance "$NGINX" "$n" "sleep 3600"; done
tb_assert_eq "containers on the workers" 4 "$(all_containers | wc -l)"
tb_pass "scale up: 3 nginx instances RUNNING"

VICTIM=$(tb_instances "$NGINX" | awk 'NR == 2 {print $1}')
VHOST=$(host_of "$NGINX" "$VICTIM")
VID=$(tb_containers "$VHOST" | grep "^$NGINX-$VICTIM-")
KEEP=$(all_containers | grep -v " $VID\$" | sort)
tb_api DELETE "/api/service/$NGINX/instance/$VICTIM" >/dev/null
tb_assert_eq "delete nginx instance $VICTIM" 200 "$TB_HTTP_STATUS"
tb_wait_instances "$NGINX" 2 RUNNING 30
gone() { ! tb_containers "$VHOST" | grep -q "^$VID\$" && [ ! -e "$TB_DIR/$VHOST/state/containers/$VID" ]; }
tb__wait "container $VID removed from $VHOST" 15 gone || tb_fail "container $VID is still on $VHOST"
tb_assert "instance $VICTIM no longer listed as RUNNING" \
    test -z "$(tb_instances "$NGINX" | awk -v n="$VICTIM" '$1 == n && $2 == "RUNNING"')"
tb_assert_eq "the other containers are untouched" "$KEEP" "$(all_containers | sort)"
tb_pass "scale down: instance $VICTIM removed from $VHOST, the others untouched"

tb_api DELETE "/api/application/$APP" >/dev/null
tb_assert_eq "undeploy the application" 200 "$TB_HTTP_STATUS"
empty()
{
    local h
    for h in $TB_HOSTS; do
        [ -z "$(tb_containers "$h")" ] || return 1
        [ -z "$(tb_bundles "$h")" ] || return 1
        [ -z "$(ls "$TB_DIR/$h/state/instances" 2>/dev/null)" ] || return 1
    done
}
if ! tb__wait "every worker empty" 20 empty; then
    for h in $TB_HOSTS; do
        echo "$h: containers [$(tb_containers "$h" | tr '\n' ' ')] bundles [$(tb_bundles "$h" | tr '\n' ' ')]" >&2
    done
    tb_fail "undeploy left containers or bundles"
fi
tb_api GET "/api/application/$APP" >/dev/null
tb_assert_eq "the application is gone" 404 "$TB_HTTP_STATUS"
for s in "$CURL" "$NGINX"; do
    tb_api GET "/api/service/$s" >/dev/null
    tb_assert_eq "service $s is gone" 404 "$TB_HTTP_STATUS"
done
# the worker-side overlay mounts are gone too
for h in $TB_HOSTS; do
    m=$(tb_exec "$h" findmnt -rn -o TARGET | grep -c "^$TB_DIR/$h/" || true)
    tb_assert_eq "no mounts left on $h" 0 "$m"
done
tb_pass "undeploy: nothing left on any worker ($((SECONDS - T0))s after setup)"
