# The multi-host end-to-end testbed: network namespaces on one machine, each
# a host with its own address, running the real binaries of $OAK_BUILD_DIR.
# Sourced by the scenarios (test/e2e/*_test.sh) after `set -euo pipefail`;
# not executable on its own. See test/e2e/README.md.
#
#   default ns   bridge oakt-br 10.213.0.254/24; docker-registry on
#                10.213.0.254:<free port> holding test/busybox:v1 and :v2
#   oakt-root    10.213.0.1   system-manager (SQLite), API :10000, gRPC :50052
#   oakt-c1/c2   10.213.0.11/.12  mosquitto :10003 + cluster-manager :10100
#   oakt-wKI     10.213.0.2I (cluster 1), 10.213.0.3I (cluster 2): node-engine
#                named wKI, in its own persistent mount namespace
#                (/run/oakt/mnt/wKI) where /proc/meminfo is replaced, so the
#                workers of cluster 1 advertise $TB_MEM_C1 MB and those of
#                cluster 2 $TB_MEM_C2 MB (node-engine has no option to cap
#                the memory it advertises), and /proc/stat is frozen, so
#                every worker reports an idle cpu whatever else loads the
#                machine
#
# Interface:
#   tb_setup [--workers-per-cluster N]  build it all (removing leftovers of an
#        earlier run first), wait until both clusters are active at the root
#        and every worker is registered and counted there; installs
#        tb_teardown as EXIT trap; exports TB_DIR, TB_API, TB_REGISTRY,
#        TB_IMAGE, TB_TOKEN, TB_HOSTS (worker hosts), TB_WORKERS_PER_CLUSTER
#   tb_wait_ready TIMEOUT_S      waits until that holds again (after restarts)
#   tb_teardown                  idempotent; stops everything, checks the
#        daemons' logs and exit codes (sanitizers), removes everything
#   tb_api METHOD PATH [BODY]    curl with the token; prints the body, sets
#        TB_HTTP_STATUS and writes it to $TB_API_STATUS_FILE (default
#        $TB_DIR/http-status; read it with tb_http_status after $(tb_api ..));
#        BODY is JSON text or @file
#   tb_sla FILE|-                the SLA with every image reference that is
#        not already in the local registry mapped to $TB_IMAGE and an empty
#        or missing cmd replaced by ["sleep","3600"]
#   tb_deploy FILE|-             POST /api/application/ with the mapped SLA;
#        prints "APP_ID SERVICE_ID..." (services in the SLA's order)
#   tb_instances SERVICE_ID      "n status cluster_id node_id" per instance
#   tb_wait_instances SERVICE_ID COUNT STATUS TIMEOUT_S
#   tb_stop / tb_start / tb_kill9 HOST   HOST: root, c1, c2, c1-mqtt,
#        c2-mqtt, w11, w12, w21, w22 (more with --workers-per-cluster)
#   tb_kill_containers HOST      SIGKILL every runc container of a worker
#   tb_cut A B / tb_heal A B     drop / restore traffic between two hosts
#   tb_exec HOST CMD...          run in the host's namespace(s)
#   tb_containers HOST           runc container ids of a worker
#   tb_running HOST              those of its containers that are running
#   tb_bundles HOST              container directories left on a worker
#   tb_placement SERVICE_ID      "n status cluster_name host" per instance
#   tb_ip HOST, tb_cluster_id c1, tb_node_id w11, tb_node_host NODE_ID
#   tb_log MSG, tb_pass MSG, tb_fail MSG, tb_assert MSG CMD...,
#   tb_assert_eq MSG EXPECTED ACTUAL
#
# Tunables (environment): TB_MEM_C1 / TB_MEM_C2 (MB per worker, default
# 2048 / 8192), TB_ROOT_ENV, TB_CLUSTER_ENV, TB_WORKER_ENV (extra
# "KEY=VALUE ..." for the daemons), TB_LOG_LEVEL (info), TB_KEEP=1 (keep
# $TB_DIR after the run).

TB_RUN=/run/oakt                # fixed: lock, mount namespaces, runc roots, pids
TB_NET=10.213.0
TB_BRIDGE=oakt-br
TB_ROOT_API_PORT=10000
TB_ROOT_GRPC_PORT=50052
TB_CM_PORT=10100
TB_MQTT_PORT=10003
TB_MEM_C1=${TB_MEM_C1:-2048}
TB_MEM_C2=${TB_MEM_C2:-8192}
TB_LOG_LEVEL=${TB_LOG_LEVEL:-info}
TB_T0=$(date +%s%N)
TB_STATE=none                   # none | up | down

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:suppressions=$PWD/test/asan.supp}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/test/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# ---------------------------------------------------------------- messages

tb_log() { printf '[tb %6.1fs] %s\n' "$(tb__elapsed)" "$*" >&2; }
tb_pass() { echo "PASS $*"; }
tb_fail()
{
    echo "FAIL: $*" >&2
    exit 1
}
# tb_assert MSG CMD...: runs CMD; fails the scenario with MSG if it fails.
tb_assert()
{
    local msg=$1
    shift
    if "$@"; then
        echo "  ok: $msg" >&2
    else
        tb_fail "$msg (command: $*)"
    fi
}
tb_assert_eq()
{
    if [ "$2" = "$3" ]; then
        echo "  ok: $1 ($3)" >&2
    else
        tb_fail "$1: expected '$2', got '$3'"
    fi
}
tb__elapsed()
{
    local ms=$((($(date +%s%N) - TB_T0) / 1000000))
    echo "$((ms / 1000)).$((ms % 1000 / 100))"
}
tb__ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------- hosts

tb__cluster_hosts() { echo c1 c2; }
# all worker hosts, cluster by cluster
tb__worker_hosts()
{
    local c i n=${TB_WORKERS_PER_CLUSTER:-2}
    for c in 1 2; do
        for ((i = 1; i <= n; i++)); do echo "w$c$i"; done
    done
}
tb__all_hosts() { echo root c1 c2 $(tb__worker_hosts); }

# tb_ip HOST: the host's address.
tb_ip()
{
    case $1 in
    root) echo "$TB_NET.1" ;;
    c1 | c1-mqtt) echo "$TB_NET.11" ;;
    c2 | c2-mqtt) echo "$TB_NET.12" ;;
    bridge | host) echo "$TB_NET.254" ;;
    w[12][1-9]) echo "$TB_NET.$(((${1:1:1} + 1) * 10 + ${1:2:1}))" ;;
    *)
        echo "tb_ip: unknown host '$1'" >&2
        return 1
        ;;
    esac
}
tb__ns() { echo "oakt-${1%-mqtt}"; }
tb__is_worker() { [[ $1 =~ ^w[12][1-9]$ ]]; }
tb__cluster_of() { echo "c${1:1:1}"; }

# tb_exec HOST CMD...: runs CMD in HOST's network namespace (and, for a
# worker, its mount namespace).
tb_exec()
{
    local h=$1
    shift
    local args=(--net="/run/netns/$(tb__ns "$h")")
    tb__is_worker "$h" && args+=(--mount="$TB_RUN/mnt/$h" --wd="$PWD")
    nsenter "${args[@]}" -- "$@"
}

# ---------------------------------------------------------------- cleanup

# Kills what the previous run (or this one) left: processes in the
# namespaces, runc containers, the registry, mount namespaces, network
# namespaces, the bridge, cgroups, the state directory.
tb__cleanup()
(
    set +e +o pipefail
    local ns pid f root id
    for ns in $(ip netns list 2>/dev/null | awk '/^oakt-/ {print $1}'); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    if [ -f "$TB_RUN/registry.pid" ]; then
        pid=$(cat "$TB_RUN/registry.pid")
        if grep -qa docker-registry "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
        rm -f "$TB_RUN/registry.pid"
    fi
    for root in "$TB_RUN"/runc/*; do
        [ -d "$root" ] || continue
        for id in $(runc --root "$root" list -q 2>/dev/null); do
            runc --root "$root" delete -f "$id" >/dev/null 2>&1 || true
        done
        rm -rf "$root"
    done
    for f in "$TB_RUN"/mnt/*; do
        [ -e "$f" ] || continue
        umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
        rm -f "$f"
    done
    if mountpoint -q "$TB_RUN/mnt" 2>/dev/null; then umount "$TB_RUN/mnt" 2>/dev/null || umount -l "$TB_RUN/mnt" || true; fi
    for ns in $(ip netns list 2>/dev/null | awk '/^oakt-/ {print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
    for f in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^oakt-/ {sub(/@.*/, "", $2); print $2}'); do
        ip link del "$f" 2>/dev/null || true
    done
    if [ -f "$TB_RUN/forward-rule" ]; then
        iptables -D FORWARD -i "$TB_BRIDGE" -o "$TB_BRIDGE" -j ACCEPT 2>/dev/null || true
        rm -f "$TB_RUN/forward-rule"
    fi
    # cgroups of the workers' containers (runc delete removed the leaves)
    for f in $(find /sys/fs/cgroup -mindepth 1 -maxdepth 8 -type d -name 'oakt-*' -prune 2>/dev/null); do
        find "$f" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    if [ -f "$TB_RUN/tbdir" ]; then
        f=$(cat "$TB_RUN/tbdir")
        if [[ $f == /tmp/oakt.* ]] && [ -d "$f" ] && [ "${TB_KEEP:-0}" != 1 ]; then
            # anything still mounted below it in this namespace
            findmnt -rn -o TARGET | grep "^$f/" | sort -r | while read -r m; do umount -l "$m" || true; done
            rm -rf "$f"
        fi
        rm -f "$TB_RUN/tbdir"
    fi
    true
)

# ---------------------------------------------------------------- processes

# tb__spawn NAME HOST LOG CMD...: starts CMD in HOST's namespace(s), in a
# session of its own, without the testbed lock; its pid goes to
# $TB_DIR/pids/NAME.
tb__spawn()
{
    local name=$1 host=$2 log=$3
    shift 3
    local args=(--net="/run/netns/$(tb__ns "$host")")
    tb__is_worker "$host" && args+=(--mount="$TB_RUN/mnt/$host")
    (
        exec {TB_LOCK_FD}>&-
        exec setsid nsenter "${args[@]}" -- env -u http_proxy -u https_proxy -u HTTP_PROXY \
            -u HTTPS_PROXY -u no_proxy -u NO_PROXY "$@"
    ) </dev/null >>"$log" 2>&1 &
    echo $! >"$TB_DIR/pids/$name"
    rm -f "$TB_DIR/pids/$name".{killed,status,hung}
    return 0
}
# tb__gone PID: the process has exited (or is a zombie not reaped yet).
tb__gone()
{
    local st
    kill -0 "$1" 2>/dev/null || return 0
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
    [ -z "$st" ] || [ "$st" = Z ]
}
tb__pid() { cat "$TB_DIR/pids/$1" 2>/dev/null || true; }
tb__alive() { local p; p=$(tb__pid "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

# tb__signal NAME SIG: signals the daemon and waits (10 s, then SIGKILL)
# until it is gone; records its exit status in $TB_DIR/pids/NAME.status.
tb__signal()
{
    local name=$1 sig=$2 p st=0 i
    p=$(tb__pid "$name")
    [ -n "$p" ] || return 0
    if kill -0 "$p" 2>/dev/null; then
        kill "-$sig" "$p" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            tb__gone "$p" && break
            sleep 0.05
        done
        if ! tb__gone "$p"; then
            tb_log "$name (pid $p) did not exit on SIG$sig within 10 s: SIGKILL"
            kill -9 "$p" 2>/dev/null || true
            echo "did not exit on SIG$sig" >"$TB_DIR/pids/$name.hung"
        fi
    fi
    wait "$p" 2>/dev/null || st=$?
    # 127: not a child of this shell (started from a subshell): unknown
    [ "$st" = 127 ] || echo "$st" >"$TB_DIR/pids/$name.status"
    rm -f "$TB_DIR/pids/$name"
    return 0
}

# tb__wait_log FILE OFFSET MARKER TIMEOUT_S [NAME]: waits until MARKER
# appears in FILE after byte OFFSET; fails early when daemon NAME exits.
tb__wait_log()
{
    local file=$1 off=$2 marker=$3 t=$4 name=${5:-} end
    end=$(($(tb__ms) + t * 1000))
    while (($(tb__ms) < end)); do
        if tail -c +$((off + 1)) "$file" 2>/dev/null | grep -qF -- "$marker"; then return 0; fi
        if [ -n "$name" ] && ! tb__alive "$name"; then
            tb_log "$name exited while starting:"
            tail -n 30 "$file" >&2 || true
            return 1
        fi
        sleep 0.05
    done
    tb_log "no '$marker' in $file within ${t}s:"
    tail -n 30 "$file" >&2 || true
    return 1
}
tb__size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# tb__port_open HOST PORT: true when something listens there (seen from the
# host's own namespace).
tb__port_open() { tb_exec "$1" bash -c "exec 3<>/dev/tcp/$(tb_ip "$1")/$2" 2>/dev/null; }

# ---------------------------------------------------------------- daemons

tb__start_root()
{
    local d=$TB_DIR/root log=$TB_DIR/root/daemon.log off
    mkdir -p "$d"
    off=$(tb__size "$log")
    # shellcheck disable=SC2086
    tb__spawn root root "$log" env OAK_STATE_DIR="$d" OAK_ADMIN_PASSWORD="$TB_ADMIN_PASSWORD" \
        OAK_API_PORT=$TB_ROOT_API_PORT OAK_GRPC_PORT=$TB_ROOT_GRPC_PORT OAK_BIND=0.0.0.0 \
        OAK_CLUSTER_STALE_S=3 OAK_CLUSTER_GRACE_S=3 OAK_LOG_LEVEL="$TB_LOG_LEVEL" \
        ${TB_ROOT_ENV:-} "$TB_BIN/system-manager"
    tb__wait_log "$log" "$off" "system-manager listening" 20 root
}

tb__start_mqtt()
{
    local c=$1 d=$TB_DIR/$1/mqtt off
    mkdir -p "$d"
    off=$(tb__size "$d/mosquitto.log")
    OAK_MQTT_ADMIN_PASSWORD=$TB_MQTT_PASSWORD "$TB_BIN/cluster-manager" broker-config "$d" \
        $TB_MQTT_PORT 0.0.0.0 >/dev/null
    tb__spawn "$c-mqtt" "$c" "$d/mosquitto.log" /usr/sbin/mosquitto -c "$d/mosquitto.conf"
    local i
    for ((i = 0; i < 200; i++)); do
        tb__port_open "$c" $TB_MQTT_PORT && return 0
        tb__alive "$c-mqtt" || break
        sleep 0.05
    done
    tb_log "mosquitto of $c did not start:"
    tail -c +$((off + 1)) "$d/mosquitto.log" | tail -n 20 >&2
    return 1
}

tb__start_cm()
{
    local c=$1 d=$TB_DIR/$1 log=$TB_DIR/$1/daemon.log off
    off=$(tb__size "$log")
    # shellcheck disable=SC2086
    tb__spawn "$c" "$c" "$log" env CLUSTER_NAME="$c" CLUSTER_LOCATION="48.1,11.6,1000" \
        SYSTEM_MANAGER_URL="$(tb_ip root)" SYSTEM_MANAGER_GRPC_PORT=$TB_ROOT_GRPC_PORT \
        OAK_JOIN_TOKEN="$(cat "$d/join-token")" OAK_API_PORT=$TB_CM_PORT OAK_BIND=0.0.0.0 \
        MQTT_BROKER_URL=127.0.0.1 MQTT_BROKER_PORT=$TB_MQTT_PORT \
        OAK_MQTT_ADMIN_PASSWORD="$TB_MQTT_PASSWORD" OAK_STATE_DIR="$d/state" \
        OAK_REPORT_INTERVAL_MS=500 OAK_WORKER_KEEPALIVE_S=1 OAK_WORKER_DEAD_S=3 \
        OAK_HANDBACK_S=2 OAK_MAX_RESTARTS=2 OAK_LOG_LEVEL="$TB_LOG_LEVEL" \
        ${TB_CLUSTER_ENV:-} "$TB_BIN/cluster-manager"
    tb__wait_log "$log" "$off" "cluster-manager listening" 20 "$c"
}

# tb__ne_env WORKER: the node engine's environment (KEY=VALUE lines).
tb__ne_env()
{
    local w=$1 c d
    c=$(tb__cluster_of "$w")
    d=$TB_DIR/$w
    cat <<EOF
OAK_CLUSTER_ADDRESS=$(tb_ip "$c")
OAK_CLUSTER_PORT=$TB_CM_PORT
OAK_WORKER_TOKEN=$(cat "$TB_DIR/$c/state/worker-token")
OAK_STATE_DIR=$d/state
OAK_NODE_NAME=$w
OAK_RUNC_ROOT=$TB_RUN/runc/$w
OAK_CGROUP_PARENT=oakt-$w
OAK_INSECURE_REGISTRIES=$TB_REGISTRY
OAK_NETMANAGER_SOCKET=$d/no-net-manager.sock
OAK_HEARTBEAT_S=1
OAK_STOP_TIMEOUT_S=1
OAK_USAGE_PERIOD_S=2
OAK_INFO_PERIOD_S=5
OAK_LOG_LEVEL=$TB_LOG_LEVEL
EOF
}

tb__start_ne()
{
    local w=$1 log=$TB_DIR/$1/daemon.log off wait=${2:-1}
    off=$(tb__size "$log")
    local envs
    mapfile -t envs < <(tb__ne_env "$w")
    # shellcheck disable=SC2086
    tb__spawn "$w" "$w" "$log" env "${envs[@]}" ${TB_WORKER_ENV:-} "$TB_BIN/node-engine"
    [ "$wait" = 1 ] || return 0
    tb__wait_log "$log" "$off" "node-engine registered node_id=" 30 "$w"
}

# A worker host: its mount namespace, where /proc/meminfo says the worker
# has $TB_MEM_C1 or $TB_MEM_C2 MB and /proc/stat is a frozen copy (so the
# worker reports 0 % cpu: the simulated hosts share the machine's cores, and
# the load of whatever else runs on it must not decide where instances go).
tb__make_worker_mnt()
{
    local w=$1 mem d
    d=$TB_DIR/$w
    mkdir -p "$d/state"
    case $w in w1*) mem=$TB_MEM_C1 ;; *) mem=$TB_MEM_C2 ;; esac
    awk -v kb=$((mem * 1024)) '
        /^MemTotal:/ {printf "MemTotal:       %d kB\n", kb; next}
        /^MemFree:/ {printf "MemFree:        %d kB\n", kb; next}
        /^MemAvailable:/ {printf "MemAvailable:   %d kB\n", kb; next}
        /^(Buffers|Cached|SwapCached|Active|Inactive|Active\(file\)|Inactive\(file\)|Shmem|SReclaimable):/ {printf "%s 0 kB\n", $1; next}
        {print}' /proc/meminfo >"$d/meminfo"
    cat /proc/stat >"$d/stat"
    touch "$TB_RUN/mnt/$w"
    unshare --mount="$TB_RUN/mnt/$w" --propagation private \
        sh -c "mount --bind '$d/meminfo' /proc/meminfo && mount --bind '$d/stat' /proc/stat"
}

# ---------------------------------------------------------------- network

tb__make_host()
{
    local h=$1 ns ip
    ns=$(tb__ns "$h")
    ip=$(tb_ip "$h")
    ip netns add "$ns"
    ip link add "oakt-v-$h" type veth peer name eth0 netns "$ns"
    ip link set "oakt-v-$h" master $TB_BRIDGE up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

# tb_cut A B: drops every packet between hosts A and B (rules in both
# namespaces); tb_heal A B removes them.
tb__cut_rules()
{
    local op=$1 a=$2 b=$3 ipa ipb
    ipa=$(tb_ip "$a")
    ipb=$(tb_ip "$b")
    tb_exec "$a" iptables -w "$op" INPUT -s "$ipb" -j DROP -m comment --comment oakt-cut &&
        tb_exec "$a" iptables -w "$op" OUTPUT -d "$ipb" -j DROP -m comment --comment oakt-cut &&
        tb_exec "$b" iptables -w "$op" INPUT -s "$ipa" -j DROP -m comment --comment oakt-cut &&
        tb_exec "$b" iptables -w "$op" OUTPUT -d "$ipa" -j DROP -m comment --comment oakt-cut
}
tb_cut()
{
    tb__cut_rules -I "$1" "$2"
    tb_log "cut $1 <-> $2"
}
tb_heal()
{
    tb__cut_rules -D "$1" "$2" 2>/dev/null || true
    tb_log "healed $1 <-> $2"
}

# ---------------------------------------------------------------- setup

tb__require()
{
    local missing=() t
    [ "$(id -u)" = 0 ] || missing+=("root")
    for t in ip nsenter unshare setsid runc /usr/sbin/mosquitto docker-registry skopeo umoci jq \
        curl iptables findmnt python3 mosquitto_pub; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ls /usr/lib/*/mosquitto_dynamic_security.so >/dev/null 2>&1 || missing+=("mosquitto dynamic-security plugin")
    for t in system-manager cluster-manager node-engine; do
        [ -x "$TB_BIN/$t" ] || missing+=("$TB_BIN/$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "SKIPPED: the e2e testbed needs: ${missing[*]}"
        exit 0
    fi
}

# The busybox test image layout (built once per script version, shared with
# the C tests: see test/common/testimage.c).
tb__image_layout()
{
    local hex dir
    hex=$(sha256sum test/common/make-test-image.sh | cut -c1-16)
    dir=$(realpath "$OAK_BUILD_DIR")/test-images/busybox-$hex
    if [ ! -d "$dir" ]; then
        mkdir -p "$(dirname "$dir")"
        bash test/common/make-test-image.sh "$dir" >"$dir.log" 2>&1 ||
            { cat "$dir.log" >&2; return 1; }
    fi
    echo "$dir"
}

tb__start_registry()
{
    local d=$TB_DIR/registry port layout tag
    mkdir -p "$d"
    port=$(python3 -c "import socket; s=socket.socket(); s.bind(('$TB_NET.254', 0)); print(s.getsockname()[1])")
    TB_REGISTRY=$TB_NET.254:$port
    cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
  delete:
    enabled: true
http:
  addr: $TB_REGISTRY
  secret: oakt-registry-secret
EOF
    (
        exec {TB_LOCK_FD}>&-
        exec setsid docker-registry serve "$d/config.yml"
    ) </dev/null >>"$d/registry.log" 2>&1 &
    echo $! >"$TB_DIR/pids/registry"
    echo $! >"$TB_RUN/registry.pid"
    layout=$(tb__image_layout)
    local i
    for ((i = 0; i < 200; i++)); do
        curl -sf --noproxy '*' -o /dev/null "http://$TB_REGISTRY/v2/" && break
        sleep 0.05
    done
    for tag in v1 v2; do
        skopeo copy --insecure-policy --dest-tls-verify=false -q "oci:$layout:$tag" \
            "docker://$TB_REGISTRY/test/busybox:$tag" >>"$d/skopeo.log" 2>&1 ||
            { cat "$d/skopeo.log" >&2; return 1; }
    done
}

tb__wait()
{
    local what=$1 t=$2 end
    shift 2
    end=$(($(tb__ms) + t * 1000))
    while (($(tb__ms) < end)); do
        "$@" && return 0
        sleep 0.1
    done
    tb_log "timed out after ${t}s waiting for $what"
    return 1
}

# true when both clusters are active at the root and each reports all its
# workers
tb__clusters_ready()
{
    local n=$TB_WORKERS_PER_CLUSTER out
    out=$(tb_api GET /api/clusters/ 2>/dev/null) || return 1
    [ "$(jq --argjson n "$n" '[.[] | select(.active == true and .capacity.active_workers == $n)] | length' <<<"$out" 2>/dev/null)" = 2 ]
}

tb_setup()
{
    local n=2
    while [ $# -gt 0 ]; do
        case $1 in
        --workers-per-cluster)
            n=$2
            shift 2
            ;;
        *) tb_fail "tb_setup: unknown option $1" ;;
        esac
    done
    ((n >= 1 && n <= 9)) || tb_fail "tb_setup: --workers-per-cluster must be 1..9"
    export TB_WORKERS_PER_CLUSTER=$n
    export OAK_BUILD_DIR=${OAK_BUILD_DIR:-build/san}
    TB_BIN=$(realpath "$OAK_BUILD_DIR")/bin
    tb__require

    mkdir -p "$TB_RUN"
    exec {TB_LOCK_FD}>"$TB_RUN/lock"
    if ! flock -n "$TB_LOCK_FD"; then
        tb_log "another testbed run holds $TB_RUN/lock; waiting (up to 15 min)"
        flock -w 900 "$TB_LOCK_FD" || tb_fail "the testbed lock stayed busy"
    fi
    trap 'tb__on_exit' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    TB_STATE=up
    tb__cleanup

    export TB_DIR
    TB_DIR=$(mktemp -d /tmp/oakt.XXXXXX)
    echo "$TB_DIR" >"$TB_RUN/tbdir"
    mkdir -p "$TB_DIR/pids" "$TB_RUN/mnt" "$TB_RUN/runc"
    TB_ADMIN_PASSWORD=admin-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    TB_MQTT_PASSWORD=mqtt-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    export TB_HOSTS
    TB_HOSTS=$(tb__worker_hosts | tr '\n' ' ')
    tb_log "testbed in $TB_DIR ($n workers per cluster, binaries from $TB_BIN)"

    # network: the bridge and one namespace per host
    ip link add $TB_BRIDGE type bridge
    ip addr add "$TB_NET.254/24" dev $TB_BRIDGE
    ip link set $TB_BRIDGE up
    if iptables -S FORWARD 2>/dev/null | grep -q -- '-P FORWARD DROP'; then
        iptables -I FORWARD -i $TB_BRIDGE -o $TB_BRIDGE -j ACCEPT
        touch "$TB_RUN/forward-rule"
    fi
    local h
    for h in $(tb__all_hosts); do tb__make_host "$h"; done
    mountpoint -q "$TB_RUN/mnt" || mount --bind "$TB_RUN/mnt" "$TB_RUN/mnt"
    mount --make-private "$TB_RUN/mnt"
    for h in $(tb__worker_hosts); do tb__make_worker_mnt "$h"; done

    # root and registry
    tb__start_root || tb_fail "system-manager did not start"
    export TB_API="http://$(tb_ip root):$TB_ROOT_API_PORT"
    export TB_TOKEN
    TB_TOKEN=$(curl -sf --noproxy '*' -X POST "$TB_API/api/auth/login" \
        -d "{\"username\":\"Admin\",\"password\":\"$TB_ADMIN_PASSWORD\"}" | jq -r .token) ||
        tb_fail "cannot log in at the root"
    tb__start_registry || tb_fail "docker-registry did not start"
    export TB_REGISTRY TB_IMAGE=$TB_REGISTRY/test/busybox:v1

    # clusters
    local c
    for c in $(tb__cluster_hosts); do
        mkdir -p "$TB_DIR/$c/state"
        tb_api POST /api/clusters/token "{\"cluster_name\":\"$c\"}" >"$TB_DIR/$c/join.json"
        [ "$TB_HTTP_STATUS" = 201 ] || tb_fail "no join token for $c (HTTP $TB_HTTP_STATUS)"
        jq -r .token "$TB_DIR/$c/join.json" >"$TB_DIR/$c/join-token"
        tb__start_mqtt "$c" || tb_fail "mosquitto of $c did not start"
    done
    for c in $(tb__cluster_hosts); do tb__start_cm "$c" || tb_fail "cluster-manager $c did not start"; done

    # workers, started together
    for h in $(tb__worker_hosts); do tb__start_ne "$h" 0; done
    for h in $(tb__worker_hosts); do
        tb__wait_log "$TB_DIR/$h/daemon.log" 0 "node-engine registered node_id=" 30 "$h" ||
            tb_fail "node-engine $h did not register"
    done
    tb__wait "both clusters active with all workers at the root" 30 tb__clusters_ready ||
        { tb_api GET /api/clusters/ >&2; tb_fail "the clusters did not become ready"; }
    tb_log "testbed ready: API $TB_API, registry $TB_REGISTRY, workers $TB_HOSTS"
}

# tb_wait_ready TIMEOUT_S: waits until both clusters are active at the root
# and report all their workers (e.g. after restarting daemons).
tb_wait_ready()
{
    tb__wait "both clusters active with all workers at the root" "$1" tb__clusters_ready ||
        tb_fail "the clusters are not ready after ${1}s: $(tb_api GET /api/clusters/ |
            jq -c '[.[] | {cluster_name, active, workers: .capacity.active_workers}]')"
}

# ---------------------------------------------------------------- teardown

tb__daemons() { ls "$TB_DIR/pids" 2>/dev/null | grep -v '\.' || true; }

tb__on_exit()
{
    local rc=$?
    tb_teardown "$rc" || rc=1
    [ "$rc" = 0 ] || echo "exit status $rc" >&2
    exit "$rc"
}

# tb_teardown [STATUS]: STATUS (default 0) is the scenario's outcome; on
# failure the tail of every daemon log is printed. Returns 1 when a daemon
# left a sanitizer report or did not exit cleanly.
tb_teardown()
{
    local rc=${1:-0} bad=0 name st log h
    [ "$TB_STATE" = up ] || return 0
    TB_STATE=down
    if [ -z "${TB_DIR:-}" ]; then
        tb__cleanup
        return 0
    fi
    set +e
    # graceful stop: workers first (their containers stay, removed below)
    for h in $(tb__worker_hosts); do tb__signal "$h" TERM; done
    for name in c1 c2 root c1-mqtt c2-mqtt registry; do tb__signal "$name" TERM; done
    for name in $(tb__daemons); do tb__signal "$name" TERM; done
    # exit statuses and sanitizer reports
    for f in "$TB_DIR"/pids/*.status "$TB_DIR"/pids/*.hung; do
        [ -e "$f" ] || continue
        name=$(basename "${f%.*}")
        [ -e "$TB_DIR/pids/$name.killed" ] && continue
        [[ $name == *mqtt || $name == registry ]] && continue
        if [[ $f == *.hung ]]; then
            echo "TESTBED: $name did not exit within 10 s of SIGTERM at teardown" >&2
            bad=1
        elif [ "$(cat "$f")" != 0 ]; then
            echo "TESTBED: $name exited with status $(cat "$f") at teardown" >&2
            bad=1
        fi
    done
    for log in "$TB_DIR"/*/daemon.log; do
        if grep -qE 'Sanitizer|runtime error:' "$log" 2>/dev/null; then
            echo "TESTBED: sanitizer report in $log:" >&2
            grep -E -A30 'Sanitizer|runtime error:' "$log" | head -80 >&2
            bad=1
        fi
    done
    if [ "$rc" != 0 ] || [ "$bad" != 0 ]; then
        for log in "$TB_DIR"/root/daemon.log "$TB_DIR"/c*/daemon.log "$TB_DIR"/c*/mqtt/mosquitto.log \
            "$TB_DIR"/w*/daemon.log "$TB_DIR"/registry/registry.log; do
            [ -s "$log" ] || continue
            echo "---- tail of ${log#"$TB_DIR"/} ----" >&2
            if [[ $log == */registry.log ]]; then tail -n 5 "$log" >&2; else tail -n 40 "$log" >&2; fi
        done
        echo "---- (testbed state in $TB_DIR, kept only with TB_KEEP=1) ----" >&2
    fi
    tb__cleanup
    rm -rf "$TB_RUN/mnt" "$TB_RUN/runc" 2>/dev/null
    [ -n "${TB_LOCK_FD:-}" ] && exec {TB_LOCK_FD}>&-
    set -e
    tb_log "testbed removed"
    [ "$bad" = 0 ]
}

# ---------------------------------------------------------------- daemons on demand

# tb__names HOST: the daemon names of a host.
tb__names()
{
    case $1 in
    root | c1 | c2 | c1-mqtt | c2-mqtt) echo "$1" ;;
    w[12][1-9]) echo "$1" ;;
    *) tb_fail "unknown host '$1'" ;;
    esac
}

# tb_stop HOST: SIGTERM, waits until it exited (a node engine leaves its
# containers running).
tb_stop()
{
    local n
    n=$(tb__names "$1")
    tb__signal "$n" TERM
    tb_log "stopped $1"
}

# tb_kill9 HOST: SIGKILL (a node engine's containers keep running; see
# tb_kill_containers).
tb_kill9()
{
    local n
    n=$(tb__names "$1")
    touch "$TB_DIR/pids/$n.killed"
    tb__signal "$n" KILL
    tb_log "killed $1 (SIGKILL)"
}

# tb_start HOST: starts the host's daemon again with the same state; waits
# until it is up (listening, or registered for a node engine).
tb_start()
{
    local h=$1
    tb__alive "$(tb__names "$h")" && tb_fail "tb_start $h: it is still running"
    case $h in
    root) tb__start_root ;;
    c1 | c2) tb__start_cm "$h" ;;
    c1-mqtt | c2-mqtt) tb__start_mqtt "${h%-mqtt}" ;;
    w*) tb__start_ne "$h" ;;
    esac || tb_fail "tb_start $h failed"
    tb_log "started $h"
}

# tb_kill_containers HOST: SIGKILL to the init of every container of a
# worker (as if the machine died with its node engine).
tb_kill_containers()
{
    local id
    for id in $(tb_containers "$1"); do
        runc --root "$TB_RUN/runc/$1" kill "$id" KILL 2>/dev/null || true
    done
}

tb_containers() { runc --root "$TB_RUN/runc/$1" list -q 2>/dev/null || true; }
# tb_running HOST: ids of the worker's containers that are running
tb_running()
{
    runc --root "$TB_RUN/runc/$1" list -f json 2>/dev/null |
        jq -r '.[]? | select(.status == "running") | .id' 2>/dev/null || true
}
# container directories (bundles) left on a worker
tb_bundles() { ls "$TB_DIR/$1/state/containers" 2>/dev/null || true; }

# ---------------------------------------------------------------- API

tb_api()
{
    local method=$1 path=$2 body=${3:-} out args
    out=$(mktemp "$TB_DIR/api.XXXXXX")
    args=(-s --noproxy '*' -o "$out" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $TB_TOKEN"
        -H 'Content-Type: application/json' --max-time 20)
    [ -n "$body" ] && args+=(--data-binary "$body")
    TB_HTTP_STATUS=$(curl "${args[@]}" "$TB_API$path") || TB_HTTP_STATUS=000
    echo "$TB_HTTP_STATUS" >"${TB_API_STATUS_FILE:-$TB_DIR/http-status}"
    cat "$out"
    rm -f "$out"
}
tb_http_status() { cat "${TB_API_STATUS_FILE:-$TB_DIR/http-status}"; }

tb_sla()
{
    local f=$1
    [ "$f" = - ] && f=/dev/stdin
    jq --arg img "$TB_IMAGE" --arg reg "$TB_REGISTRY/" '
        .applications |= map(.microservices |= map(
            (if ((.code // "") | startswith($reg)) then . else .code = $img end)
            | (if ((.cmd // []) | length) == 0 then .cmd = ["sleep", "3600"] else . end)))' "$f"
}

tb_deploy()
{
    local sla out app
    sla=$(tb_sla "$1")
    out=$(tb_api POST /api/application/ "$sla")
    [[ $(tb_http_status) == 20[01] ]] || tb_fail "deploy of $1: HTTP $(tb_http_status): $out"
    # the answer lists the user's applications; ours is the newest of that name
    local name
    name=$(jq -r '.applications[0].application_name' <<<"$sla")
    app=$(jq -r --arg n "$name" '[.[] | select(.application_name == $n)] | last' <<<"$out")
    local id ids=() svc sname
    id=$(jq -r '._id' <<<"$app")
    for sname in $(jq -r '.applications[0].microservices[].microservice_name' <<<"$sla"); do
        for svc in $(jq -r '.microservices[]' <<<"$app"); do
            if [ "$(tb_api GET "/api/service/$svc" | jq -r .microservice_name)" = "$sname" ]; then
                ids+=("$svc")
                break
            fi
        done
    done
    echo "$id ${ids[*]}"
}

tb_instances()
{
    tb_api GET "/api/service/$1" |
        jq -r '.instance_list[]? | "\(.instance_number) \(.status) \(.cluster_id // "-") \(.worker_id // "-")"'
}

tb_wait_instances()
{
    local sid=$1 count=$2 status=$3 t=$4 end got
    end=$(($(tb__ms) + t * 1000))
    while :; do
        got=$(tb_instances "$sid" | awk -v s="$status" '$2 == s' | wc -l)
        [ "$got" = "$count" ] && return 0
        (($(tb__ms) < end)) || break
        sleep 0.2
    done
    echo "instances of $sid (n status cluster node):" >&2
    tb_api GET "/api/service/$sid" | jq -c '.instance_list[]?' >&2
    tb_fail "service $sid: expected $count instance(s) $status within ${t}s, have $got"
}

# tb_placement SERVICE_ID: "n status cluster_name host" per instance (host
# "?" when the root names no worker of the testbed).
tb_placement()
{
    local clusters n st cid node
    clusters=$(tb_api GET /api/clusters/)
    tb_instances "$1" | while read -r n st cid node; do
        echo "$n $st $(jq -r --arg id "$cid" '[.[] | select(._id == $id) | .cluster_name][0] // "?"' <<<"$clusters") $(tb_node_host "$node")"
    done
}

# tb_cluster_id NAME: the root's id of cluster c1/c2.
tb_cluster_id() { tb_api GET /api/clusters/ | jq -r --arg n "$1" '.[] | select(.cluster_name == $n) | ._id // .id'; }
# tb_node_id HOST: a worker's node id (from its node file).
tb_node_id() { jq -r .id "$TB_DIR/$1/state/node.json"; }
# tb_node_host NODE_ID: the worker host with that node id.
tb_node_host()
{
    local h
    for h in $(tb__worker_hosts); do
        [ "$(tb_node_id "$h" 2>/dev/null)" = "$1" ] && { echo "$h"; return 0; }
    done
    echo "?"
}
