#!/usr/bin/env bash
# The whole GPU check in one command, for the GPU machine: build, run the `cuda` tests, run
# compute-sanitizer (memcheck, and racecheck on the attention kernels) over them, then the
# benchmarks. Logs go to $OUT (or ./out). Prints a summary table last.
#
#   bash scripts/gpu-check.sh [--no-tests] [--no-sanitizer] [--no-bench] [--only REGEX]
#
# FLASHGRAD_COMMIT=<hash> names the commit in the summary where the copy has no git history.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
# The device tool brings back at most 8 files: per-run logs go to LOGS, and are gathered
# into $OUT/sanitizer.log at the end.
LOGS=$(mktemp -d)
TESTS=1; SANITIZE=1; BENCH=1; ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-tests) TESTS=0 ;;
    --no-sanitizer) SANITIZE=0 ;;
    --no-bench) BENCH=0 ;;
    --only) ONLY="$2"; shift ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
PREFIX=""
[ -d .deps/usr ] && PREFIX="-DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
summary=()
status=0

cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90a} \
  $PREFIX > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
if ! cmake --build build -j "$(nproc)" >> "$OUT/build.log" 2>&1; then
  grep -E "error|FAILED" "$OUT/build.log" | head -40
  exit 1
fi
summary+=("build: ok")

GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)
if [ $TESTS -eq 1 ]; then
ctest --test-dir build -L cuda ${ONLY:+-R "$ONLY"} --output-on-failure > "$OUT/ctest-cuda.log" 2>&1
rc=$?
summary+=("ctest -L cuda: $(grep -E 'tests passed|tests failed' "$OUT/ctest-cuda.log" | tail -1) (rc $rc)")
[ $rc -ne 0 ] && status=1 && grep -B2 -A25 -E "FAILED|failed" "$OUT/ctest-cuda.log" | head -80
fi

if [ $TESTS -eq 1 ] && [ -z "$ONLY" ]; then
  build/flashgrad gradcheck attention --device cuda > "$OUT/gradcheck-cuda.log" 2>&1
  rc=$?
  summary+=("gradcheck attention --device cuda: $(tail -1 "$OUT/gradcheck-cuda.log") (rc $rc)")
  [ $rc -ne 0 ] && status=1 && grep -E "FAIL|error" "$OUT/gradcheck-cuda.log" | head -20
fi

if [ $SANITIZE -eq 1 ]; then
  for exe in build/tests/test_*; do
    name=$(basename "$exe")
    [ -n "$ONLY" ] && ! echo "$name" | grep -qE "$ONLY" && continue
    # Test cases tagged [oom] provoke out-of-memory on purpose, which the sanitizer reports as
    # API errors; they run (unsanitised) in ctest above.
    n=$("$exe" "[cuda]~[oom]" --list-test-names-only 2>/dev/null | grep -c .)
    [ "$n" -eq 0 ] && continue
    compute-sanitizer --tool memcheck --error-exitcode 9 "$exe" "[cuda]~[oom]" > "$LOGS/memcheck-$name.log" 2>&1
    rc=$?
    errs=$(grep -E "ERROR SUMMARY" "$LOGS/memcheck-$name.log" | tail -1)
    summary+=("memcheck $name: ${errs:-no summary} (rc $rc)")
    [ $rc -ne 0 ] && status=1 && tail -30 "$LOGS/memcheck-$name.log"
  done
  # Racecheck on every test case tagged [racecheck], one process per case, all in parallel
  # (racecheck is slow: a whole binary at once runs for many minutes).
  pids=()
  for exe in build/tests/test_*; do
    name=$(basename "$exe")
    [ -n "$ONLY" ] && ! echo "$name" | grep -qE "$ONLY" && continue
    while IFS= read -r tc; do
      [ -z "$tc" ] && continue
      log="$LOGS/racecheck-$name-$(echo "$tc" | tr -c 'A-Za-z0-9' '_').log"
      ( compute-sanitizer --tool racecheck --error-exitcode 9 "$exe" "$tc" > "$log" 2>&1
        echo "rc $?" >> "$log" ) &
      pids+=($!)
    done < <("$exe" "[cuda][racecheck]" --list-test-names-only 2>/dev/null)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  for log in "$LOGS"/racecheck-*.log; do
    [ -e "$log" ] || continue
    rc=$(tail -1 "$log" | sed 's/rc //')
    summary+=("$(basename "$log" .log): $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$log" | tail -1) (rc $rc)")
    [ "$rc" != "0" ] && status=1 && tail -30 "$log"
  done
fi

if [ $BENCH -eq 1 ] && [ -x bench/run.sh ]; then
  bash bench/run.sh > "$OUT/bench.log" 2>&1
  rc=$?
  summary+=("bench: rc $rc (see bench.log)")
  # A failed correctness check inside the benchmark fails the whole check.
  [ $rc -ne 0 ] && status=1
  tail -40 "$OUT/bench.log"
fi

cat "$LOGS"/*.log > "$OUT/sanitizer.log" 2>/dev/null
echo "==== gpu-check summary ($GPU; commit ${FLASHGRAD_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}; $(date -u +%F)) ===="
for s in "${summary[@]}"; do echo "  $s"; done
exit $status
