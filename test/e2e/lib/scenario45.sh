# Helpers shared by the end-to-end scenarios 4 (daemon restarts during a
# deploy burst) and 5 (a cluster cut off from the root). Sourced after
# test/e2e/lib/testbed.sh; not executable on its own.
#
#   s45_seed                      seed $RANDOM from OAK_E2E_SEED (or a fresh one) and print it
#   s45_write_sla FILE APP N [S]  an SLA with S (1) small services of N replicas running busybox
#   s45_post_app FILE             POST the SLA; prints "http_status ms" (status 000: no answer)
#   s45_post_json FILE            the same without mapping the images
#   s45_root_services             "service_id app service instances running" per service
#   s45_root_instances            "service_id n generation status cluster worker_host app" per instance
#   s45_worker_containers         "host container_id pid status" per runc container on every worker
#   s45_container_pids            "host container_id pid" per container on every worker
#   s45_exactly_once              0 when the root's instances and the workers' containers
#                                 match one to one (all RUNNING, no orphans); else explains why
#   s45_wait_exactly_once T       polls s45_exactly_once for up to T seconds
#
# Container ids are "<service_id>-<instance_number>-<generation>" (node_engine/ninst.c).

s45_seed()
{
    S45_SEED=${OAK_E2E_SEED:-$(( ($(date +%s%N) / 1000) % 1000000 ))}
    RANDOM=$S45_SEED
    tb_log "random seed $S45_SEED (replay with OAK_E2E_SEED=$S45_SEED $0)"
}

# s45_node_hosts: "node_id host" for every worker (from the node files).
s45_node_hosts()
{
    local h
    for h in $TB_HOSTS; do
        echo "$(tb_node_id "$h" 2>/dev/null || echo "-") $h"
    done
}

# s45_write_sla FILE APP_NAME REPLICAS [SERVICES]: an application with
# SERVICES (default 1) microservices svc0, svc1, ... of REPLICAS replicas
# each; tb_sla maps their image to the registry's busybox and their empty
# cmd to sleep 3600.
s45_write_sla()
{
    local file=$1 app=$2 replicas=$3 nsvc=${4:-1}
    jq -n --arg app "$app" --argjson reps "$replicas" --argjson nsvc "$nsvc" '{
        sla_version: "v2.0", customerID: "Admin",
        applications: [{
            applicationID: "", application_name: $app, application_namespace: "e2e",
            application_desc: "end-to-end scenario 4/5",
            microservices: [range($nsvc) as $i | {
                microserviceID: "", microservice_name: "svc\($i)", microservice_namespace: "e2e",
                virtualization: "container", cmd: [], memory: 8, vcpus: 0, vgpus: 0, vtpus: 0,
                bandwidth_in: 0, bandwidth_out: 0, storage: 0,
                code: "docker.io/library/busybox:latest", state: "", port: "",
                replicas: $reps, added_files: []}]
        }]}' >"$file"
}

# s45_post_app FILE: POSTs the SLA in FILE with its images mapped (tb_sla);
# s45_post_json FILE: POSTs FILE as it is. Both print "http_status ms"
# (status 000: no answer) and never fail.
s45_post_app()
{
    tb_sla "$1" >"$1.mapped"
    s45_post_json "$1.mapped"
}
s45_post_json()
{
    local out
    out=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 -X POST \
        -H "Authorization: Bearer $TB_TOKEN" -H 'Content-Type: application/json' \
        --data-binary "@$1" "$TB_API/api/application/" 2>/dev/null) || true
    awk '{printf "%s %d\n", $1, $2 * 1000}' <<<"${out:-000 0}"
}

# Every service the root knows, one line each:
#   service_id app_name service_name instances running
s45_root_services()
{
    curl -sf --noproxy '*' --max-time 10 -H "Authorization: Bearer $TB_TOKEN" \
        "$TB_API/api/services/" |
        jq -r '.[] | "\(._id) \(.app_name) \(.service_name) \(.instance_list | length) \([.instance_list[] | select(.status == "RUNNING")] | length)"'
}

# Every instance the root knows, one line each:
#   service_id instance_number generation status cluster_name worker_host app_name
# (worker_host: the worker host the root's worker_id names, "-" if none).
s45_root_instances()
{
    local body
    body=$(curl -sf --noproxy '*' --max-time 10 -H "Authorization: Bearer $TB_TOKEN" \
        "$TB_API/api/services/") || return 1
    jq -r --argjson hosts "$(s45_node_hosts | jq -R 'split(" ") | {(.[0]): .[1]}' | jq -s add)" \
        '.[] | . as $s | (.instance_list // [])[] |
        "\($s._id) \(.instance_number) \(.generation // 0) \(.status) \(.cluster_name // "-") \($hosts[.worker_id // ""] // "-") \($s.app_name)"' \
        <<<"$body"
}

# Every runc container on every worker: "host container_id pid status".
s45_worker_containers()
{
    local h
    for h in $TB_HOSTS; do
        runc --root "$TB_RUN/runc/$h" list -f json 2>/dev/null |
            jq -r --arg h "$h" '(. // [])[] | "\($h) \(.id) \(.pid) \(.status)"'
    done
}

# Every runc container with its init pid: "host container_id pid".
s45_container_pids()
{
    s45_worker_containers | awk '{print $1, $2, $3}'
}

# s45_exactly_once: compares the root's instances with the containers on
# the workers. Prints the problems (one per line) and returns 1 if any:
# an instance not RUNNING, an instance without a container or with more
# than one, a container of another generation or on another worker than
# the root says, a container not running, a container no instance claims.
s45_exactly_once()
{
    local root conts
    root=$(s45_root_instances) || { echo "root API not answering"; return 1; }
    conts=$(s45_worker_containers) || { echo "cannot list containers"; return 1; }
    local -A want_gen want_host seen
    local problems=() sid n gen st cl wh app h c key
    while read -r sid n gen st cl wh app; do
        [ -n "$sid" ] || continue
        key="$sid-$n"
        [ "$st" = RUNNING ] || problems+=("instance $app $key: $st (cluster $cl)")
        want_gen[$key]=$gen
        want_host[$key]=$wh
    done <<<"$root"
    local cst
    while read -r h c _ cst; do
        [ -n "$c" ] || continue
        [ "$cst" = running ] || problems+=("container $c on $h is $cst")
        if [[ ! $c =~ ^(.+)-([0-9]+)-([0-9]+)$ ]]; then
            problems+=("container $c on $h: not an instance container")
            continue
        fi
        key="${BASH_REMATCH[1]}-${BASH_REMATCH[2]}"
        gen=${BASH_REMATCH[3]}
        if [ -z "${want_gen[$key]+x}" ]; then
            problems+=("orphan container $c on $h: the root has no such instance")
            continue
        fi
        if [ -n "${seen[$key]+x}" ]; then
            problems+=("instance $key runs twice: $c on $h and ${seen[$key]}")
            continue
        fi
        seen[$key]="$c on $h"
        [ "$gen" = "${want_gen[$key]}" ] ||
            problems+=("container $c on $h: generation $gen, the root wants ${want_gen[$key]}")
        [ "$h" = "${want_host[$key]}" ] ||
            problems+=("container $c on $h: the root places it on ${want_host[$key]}")
    done <<<"$conts"
    for key in "${!want_gen[@]}"; do
        [ -n "${seen[$key]+x}" ] || problems+=("instance $key has no container on any worker")
    done
    if [ ${#problems[@]} -gt 0 ]; then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
    return 0
}

# s45_wait_exactly_once TIMEOUT_S: waits until s45_exactly_once holds;
# on timeout prints the last problems and returns 1.
s45_wait_exactly_once()
{
    local deadline=$((SECONDS + $1)) out
    while :; do
        if out=$(s45_exactly_once); then
            return 0
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "$out" | head -40 >&2
            return 1
        fi
        sleep 0.5
    done
}
