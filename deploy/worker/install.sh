#!/usr/bin/env bash
# Installs an Oak worker (node-engine) on this machine:
#   - the binary into /usr/local/bin (from --binary, default build/bin/node-engine)
#   - the systemd unit into /etc/systemd/system/node-engine.service
#   - /etc/oak/node-engine.json (mode 0600) from the arguments
#   - docs/node-engine.md into /usr/local/share/doc/oak/
# then enables and starts the service (unless --no-start or no systemd).
#
# Usage:
#   install.sh --cluster ADDRESS --token WORKER_TOKEN [--cluster-port 10100]
#              [--name NODE_NAME] [--ip NODE_IP] [--state-dir DIR]
#              [--insecure-registries host:port,...] [--binary PATH]
#              [--prefix /] [--no-start]
# --prefix installs under another root (for packaging and tests): nothing is
# enabled or started then.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cluster="" token="" cport=10100 name="" ip="" state_dir="" insecure="" prefix="/"
binary="$repo/build/bin/node-engine" start=1

die() { echo "install.sh: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --cluster) need "$@"; cluster=$2; shift 2 ;;
    --token) need "$@"; token=$2; shift 2 ;;
    --cluster-port) need "$@"; cport=$2; shift 2 ;;
    --name) need "$@"; name=$2; shift 2 ;;
    --ip) need "$@"; ip=$2; shift 2 ;;
    --state-dir) need "$@"; state_dir=$2; shift 2 ;;
    --insecure-registries) need "$@"; insecure=$2; shift 2 ;;
    --binary) need "$@"; binary=$2; shift 2 ;;
    --prefix) need "$@"; prefix=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$cluster" ] || die "--cluster is required"
[ -n "$token" ] || die "--token is required"
[[ "$cport" =~ ^[0-9]+$ ]] && [ "$cport" -ge 1 ] && [ "$cport" -le 65535 ] || die "--cluster-port must be 1-65535"
[ -z "$name" ] || [[ "$name" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "--name must be 1-64 of [A-Za-z0-9._-]"
[ -x "$binary" ] || die "no node-engine binary at $binary (build it with make, or pass --binary)"
command -v runc >/dev/null || echo "install.sh: warning: runc is not installed (apt-get install runc)" >&2

root=${prefix%/}
install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/local/share/doc/oak"
install -d -m 0700 "$root/etc/oak"
install -m 0755 "$binary" "$root/usr/local/bin/node-engine"
install -m 0644 "$here/node-engine.service" "$root/etc/systemd/system/node-engine.service"
[ -f "$repo/docs/node-engine.md" ] && install -m 0644 "$repo/docs/node-engine.md" "$root/usr/local/share/doc/oak/node-engine.md"

# the configuration, written as JSON with proper escaping (no python or jq
# needed on the worker)
json_str() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in
      '"') out+='\"' ;;
      '\') out+='\\' ;;
      $'\n') out+='\n' ;;
      $'\t') out+='\t' ;;
      $'\r') out+='\r' ;;
      *) if [[ "$c" < " " ]]; then out+=$(printf '\\u%04x' "'$c"); else out+=$c; fi ;;
    esac
  done
  printf '"%s"' "$out"
}
conf="$root/etc/oak/node-engine.json"
tmp=$(mktemp "$root/etc/oak/.node-engine.json.XXXXXX")
{
  printf '{\n  "cluster_address": %s,\n  "cluster_port": %d,\n  "worker_token": %s' \
    "$(json_str "$cluster")" "$cport" "$(json_str "$token")"
  [ -z "$name" ] || printf ',\n  "node_name": %s' "$(json_str "$name")"
  [ -z "$ip" ] || printf ',\n  "node_ip": %s' "$(json_str "$ip")"
  [ -z "$state_dir" ] || printf ',\n  "state_dir": %s' "$(json_str "$state_dir")"
  [ -z "$insecure" ] || printf ',\n  "insecure_registries": %s' "$(json_str "$insecure")"
  printf '\n}\n'
} >"$tmp"
chmod 0600 "$tmp"
mv -f "$tmp" "$conf"
echo "installed node-engine; configuration in $conf"

if [ "$root" != "" ] || [ $start -eq 0 ]; then
  exit 0
fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable node-engine.service
  systemctl restart node-engine.service
  echo "node-engine.service enabled and started (journalctl -u node-engine)"
else
  echo "systemd is not running here: start it with /usr/local/bin/node-engine --config $conf"
fi
