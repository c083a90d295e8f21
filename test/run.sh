#!/usr/bin/env bash
# Runs every test of the project against the build in $1 (default build/san):
# unit tests, integration tests (real binaries on free ports), fuzz harness
# replays over their seed corpora. Prints one line per test binary and a
# closing "N passed, N failed" line; exits non-zero if anything failed.
set -uo pipefail
B=${1:-build/san}
cd "$(dirname "$0")/.."
export OAK_BUILD_DIR="$PWD/$B"
export OAK_SHARED_DIR="${OAK_SHARED_DIR:-$(cd .. && pwd)/shared}"
# test binaries live below $B/test, not $B/bin: point them at the plugin
export OAK_STORE_MONGO_PLUGIN="${OAK_STORE_MONGO_PLUGIN:-$OAK_BUILD_DIR/lib/oak/oak-store-mongo.so}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:suppressions=$PWD/test/asan.supp}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/test/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
LOGDIR="$B/test-logs"
mkdir -p "$LOGDIR"
pass=0 fail=0 skip=0
failed=()

run_one() {
  local name=$1; shift
  local log="$LOGDIR/${name//\//_}.log"
  local t0=$(date +%s%N)
  if timeout 600 "$@" >"$log" 2>&1; then
    local ms=$(( ($(date +%s%N) - t0) / 1000000 )); local dt="$((ms/1000)).$(printf %03d $((ms%1000)))"
    if grep -q "SKIPPED" "$log"; then
      echo "ok    $name (${dt}s) -- with skips:"; grep "SKIPPED" "$log" | sed 's/^/        /'
    else
      echo "ok    $name (${dt}s)"
    fi
    pass=$((pass+1))
  else
    echo "FAIL  $name (log: $log)"; tail -n 40 "$log" | sed 's/^/      | /'
    fail=$((fail+1)); failed+=("$name")
  fi
}

for t in "$B"/test/unit/*_test; do
  [ -x "$t" ] && run_one "unit/$(basename "$t")" "$t"
done
for t in "$B"/test/integration/*_test; do
  [ -x "$t" ] && run_one "integration/$(basename "$t")" "$t"
done
for t in test/integration/*_test.sh; do
  [ -x "$t" ] && run_one "integration/$(basename "$t")" "$t"
done
# End-to-end scenarios on the network-namespace testbed (test/e2e/lib/).
for t in test/e2e/*_test.sh; do
  [ -x "$t" ] && run_one "e2e/$(basename "$t")" "$t"
done
for f in "$B"/test/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  n=$(basename "$f")
  corpus="test/fuzz/corpus/${n#fuzz_}"
  if [ -d "$corpus" ]; then
    run_one "fuzz-replay/$n" "$f" "$corpus"
  else
    echo "FAIL  fuzz-replay/$n: no seed corpus at $corpus"; fail=$((fail+1)); failed+=("$n")
  fi
done

echo
if [ $fail -gt 0 ]; then echo "failed: ${failed[*]}"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
