#!/usr/bin/env bash
# Installs the Debian packages the project needs to build, test and run.
# Idempotent and quick when everything is present: only missing packages
# trigger an `apt-get update` + `apt-get install`.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang clang-format
  libmicrohttpd-dev libjansson-dev libmongoc-dev libbson-dev
  libpaho-mqtt-dev libprotobuf-c-dev protobuf-c-compiler libgrpc-dev
  libnl-3-dev libnl-route-3-dev libcurl4-openssl-dev libarchive-dev
  libsqlite3-dev libssl-dev libcmocka-dev
  mosquitto mosquitto-clients runc skopeo umoci docker-registry busybox-static
  iptables iproute2 curl jq valgrind docker-compose openssl python3
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The packaged services are not used: tests and `make run` start their own
# instances on free ports.
for svc in mosquitto docker-registry; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
