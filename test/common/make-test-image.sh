#!/usr/bin/env bash
# Builds the OCI image layout used by the node-engine tests, offline, from
# busybox-static, with umoci:
#   busybox:v1  one layer: /bin/busybox and its applet symlinks (sh, echo,
#               sleep, cat, ls, ...), /etc/passwd, /etc/group,
#               /etc/to-delete, /data/keep and /data/old;
#               config: Env PATH + FOO=bar, Cmd ["/bin/sh","-c","echo hello"],
#               WorkingDir /data, User 0:0
#   busybox:v2  v1 plus a second layer that deletes /etc/to-delete and
#               /data/old (whiteouts) and adds /etc/added
#   busybox:multi  an image index: linux/amd64 -> v1, linux/arm64/v8 -> v2
# Usage: make-test-image.sh <layout-dir>   (the directory must not exist; the
# layout is built beside it and renamed into place, so concurrent builders
# never see half a layout)
set -euo pipefail
out=$1
[ -e "$out" ] && exit 0
parent=$(dirname "$out")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
L="$work/layout"
umoci init --layout "$L"
umoci new --image "$L:v1"
umoci unpack --image "$L:v1" "$work/b1" >/dev/null
r="$work/b1/rootfs"
mkdir -p "$r/bin" "$r/etc" "$r/data" "$r/tmp"
chmod 1777 "$r/tmp"
cp /bin/busybox "$r/bin/busybox"
for a in sh echo sleep cat ls true false env id mkdir rm touch wc head tail printf test kill hostname; do
  ln -s busybox "$r/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
echo "this file is deleted in v2" >"$r/etc/to-delete"
echo keep >"$r/data/keep"
echo old >"$r/data/old"
umoci repack --image "$L:v1" "$work/b1"
umoci config --image "$L:v1" --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env FOO=bar --config.cmd /bin/sh --config.cmd -c --config.cmd "echo hello" \
  --config.workingdir /data --config.user 0:0
umoci unpack --image "$L:v1" "$work/b2" >/dev/null
rm "$work/b2/rootfs/etc/to-delete" "$work/b2/rootfs/data/old"
echo added >"$work/b2/rootfs/etc/added"
umoci repack --image "$L:v2" "$work/b2"
umoci gc --layout "$L"
# the index: two platforms pointing at v1 and v2
entry() { jq -c --arg t "$1" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | {mediaType, digest, size}' "$L/index.json"; }
e1=$(entry v1 | jq -c '. + {platform: {architecture: "amd64", os: "linux"}}')
e2=$(entry v2 | jq -c '. + {platform: {architecture: "arm64", os: "linux", variant: "v8"}}')
idx=$(jq -cn --argjson a "$e1" --argjson b "$e2" \
  '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: [$a, $b]}')
printf '%s' "$idx" >"$work/idx"
d=$(sha256sum "$work/idx" | cut -d' ' -f1)
mv "$work/idx" "$L/blobs/sha256/$d"
jq -c --arg d "sha256:$d" --argjson s "$(stat -c %s "$L/blobs/sha256/$d")" \
  '.manifests += [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
    annotations: {"org.opencontainers.image.ref.name": "multi"}}]' "$L/index.json" >"$work/index.json"
mv "$work/index.json" "$L/index.json"
mv -T "$L" "$out" 2>/dev/null || true
