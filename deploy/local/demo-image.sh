#!/usr/bin/env bash
# Builds the demo application's OCI image layout for `make run`, offline,
# from busybox-static with umoci (nothing is fetched from the internet):
#   demo:1  one layer: /bin/busybox with its applet symlinks, /etc/passwd,
#           /etc/group and /app/demo.sh, a loop that prints a numbered line
#           every $INTERVAL seconds (5 by default) and exits 0 on SIGTERM.
#           Config: Cmd ["/bin/sh", "/app/demo.sh"], Env PATH + INTERVAL=5,
#           WorkingDir /app, User 0:0.
# Usage: demo-image.sh <layout-dir>
# The layout is built beside <layout-dir> and renamed into place, so an
# interrupted build never leaves half a layout. An existing <layout-dir> is
# left as it is. Push it with
#   skopeo --insecure-policy copy --dest-tls-verify=false oci:<layout-dir>:1 docker://HOST:PORT/oak/demo:1
set -euo pipefail
out=${1:?usage: demo-image.sh <layout-dir>}
[ -e "$out" ] && exit 0
for t in umoci busybox; do
  command -v "$t" >/dev/null || { echo "demo-image.sh: $t is not installed (make deps)" >&2; exit 1; }
done
busybox=$(command -v busybox)
if ldd "$busybox" >/dev/null 2>&1; then # ldd fails on a static binary
  echo "demo-image.sh: $busybox is not static (install busybox-static)" >&2
  exit 1
fi
parent=$(dirname "$out")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.demo-image-XXXXXX")
trap 'rm -rf "$work"' EXIT
L="$work/layout"
umoci init --layout "$L"
umoci new --image "$L:1"
umoci unpack --image "$L:1" "$work/b" >/dev/null
r="$work/b/rootfs"
mkdir -p "$r/bin" "$r/etc" "$r/app" "$r/tmp"
chmod 1777 "$r/tmp"
cp "$busybox" "$r/bin/busybox"
for a in sh echo sleep cat ls date env hostname id ps printf true false wget; do
  ln -s busybox "$r/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
cat >"$r/app/demo.sh" <<'EOF'
#!/bin/sh
# oak demo application: one line every $INTERVAL seconds; exits 0 on SIGTERM.
trap 'echo "demo: stopping"; exit 0' TERM INT
echo "demo: started on $(hostname)"
n=0
while :; do
  n=$((n + 1))
  echo "demo: tick $n at $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
  sleep "${INTERVAL:-5}" &
  wait $!
done
EOF
chmod 755 "$r/app/demo.sh"
umoci repack --image "$L:1" "$work/b"
umoci config --image "$L:1" \
  --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env INTERVAL=5 --config.cmd /bin/sh --config.cmd /app/demo.sh \
  --config.workingdir /app --config.user 0:0
umoci gc --layout "$L"
mv -T "$L" "$out"
