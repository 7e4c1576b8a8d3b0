#!/usr/bin/env bash
# Fuzzes the checkpoint reader with libFuzzer (tests/fuzz/fuzz_checkpoint.cpp): builds a
# CPU-only, sanitizer-instrumented flashgrad with clang in build-fuzz/, then runs the target
# from the seed corpus of real checkpoints (tests/fuzz/corpus) for SECONDS seconds.
#
#   bash scripts/fuzz.sh [SECONDS]              # default 60, a fresh random seed
#   FUZZ_SEED=1 bash scripts/fuzz.sh 60         # what CI runs (ctest fuzz_checkpoint_smoke)
#
# With FUZZ_SEED set, libFuzzer draws the same mutations in the same order on every run, so
# the CI smoke is reproducible: it fails on a change to the reader, not on a lucky draw. New
# findings come from the long, randomly seeded runs (README, "Testing"); each one found becomes
# a unit test before it is fixed.
#
# New interesting inputs go to build-fuzz/corpus (the committed seeds stay untouched); a
# crash leaves its input in build-fuzz/ as crash-<hash> and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_TO_RUN=${1:-60}
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (bash scripts/setup.sh installs it)"; exit 1; }
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DFLASHGRAD_CUDA=OFF -DFLASHGRAD_TESTS=OFF -DFLASHGRAD_FUZZ=ON \
  ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH} > /dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target fuzz_checkpoint > "$BUILD_DIR.log" 2>&1 \
  || { tail -40 "$BUILD_DIR.log"; exit 1; }
mkdir -p "$BUILD_DIR/corpus"
cd "$BUILD_DIR"
# -rss_limit_mb: a checkpoint whose sizes ask for gigabytes must be refused, not allocated.
set +e
./fuzz_checkpoint ${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 corpus "$ROOT/tests/fuzz/corpus" > fuzz.log 2>&1
rc=$?
set -e
grep -E "^#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY" fuzz.log || true
if [ $rc -ne 0 ] || ls crash-* leak-* timeout-* oom-* >/dev/null 2>&1; then
  echo "fuzz: FAILED (exit $rc); the input that broke it is in $BUILD_DIR/ (crash-*/timeout-*/oom-*)"
  tail -40 fuzz.log
  exit 1
fi
echo "fuzz: ok, no crash in ${SECONDS_TO_RUN} s"
