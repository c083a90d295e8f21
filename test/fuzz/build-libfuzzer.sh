#!/usr/bin/env bash
# Builds every fuzz harness as a coverage-guided libFuzzer binary with clang
# (ASan+UBSan) into build/fuzz/, and optionally runs one:
#   test/fuzz/build-libfuzzer.sh              # build all
#   test/fuzz/build-libfuzzer.sh sla 60       # build all, fuzz 'sla' for 60 s
# The replay builds used by `make test` are plain binaries (replay_main.c).
set -euo pipefail
cd "$(dirname "$0")/../.."
O=build/fuzz
FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -g -O1 -Wno-error"
make O=$O CC=clang CFLAGS="$FLAGS" $O/liboak.a $O/libroot_orchestrator.a \
  $O/libcluster_orchestrator.a $O/libnode_engine.a $O/libnet_manager.a $O/libcli.a >/dev/null
PKG_CFLAGS=$(pkg-config --cflags libmicrohttpd jansson sqlite3 libcurl openssl grpc libprotobuf-c libarchive)
PKG_LIBS=$(pkg-config --libs libmicrohttpd jansson sqlite3 libcurl openssl grpc libprotobuf-c libarchive)
for src in test/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  clang -fsanitize=fuzzer,address,undefined -g -O1 -D_GNU_SOURCE -I. -I$O/gen $PKG_CFLAGS \
    -o "$O/$name" "$src" -Wl,--start-group $O/lib*.a -Wl,--end-group $PKG_LIBS -lpaho-mqtt3as -lpthread -lm -ldl
  echo "built $O/$name"
done
if [ $# -ge 1 ]; then
  mkdir -p "$O/corpus-$1"
  "$O/fuzz_$1" -max_total_time="${2:-60}" "$O/corpus-$1" "test/fuzz/corpus/$1"
fi
