#!/bin/bash
# Device call (session 3, call 1): build; the `cuda` tests (the split nn kernels and the KV-cache
# tests run on the GPU for the first time); gradcheck; the attention benchmark beside PyTorch
# SDPA, both timed back to back; `bench decode` before the decode kernel; then memcheck over
# every test binary and racecheck per tagged test case, in parallel, with the time left.
#   bash bench/gpu-check/device-call-2026-11-28-c.sh     (repository root, .deps carried)
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p $L
T0=$(date +%s); BUDGET=${BUDGET:-570}
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
pack() { tar czf $FINAL/logs.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee -a $FINAL/summary.txt
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 16 >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -20 | tee -a $FINAL/summary.txt
ctest --test-dir build -L cuda --output-on-failure -j 4 --timeout 240 > $L/ctest-cuda.log 2>&1; el "ctest cuda rc $? $(grep -E 'tests passed|tests failed' $L/ctest-cuda.log)"
grep -A8 "The following tests FAILED" $L/ctest-cuda.log | tee -a $FINAL/summary.txt
grep -B2 -A14 "FAILED:" $L/ctest-cuda.log | head -60 | tee -a $FINAL/summary.txt
pack
bash bench/run.sh > $L/bench-attention.log 2>&1; el "bench/run.sh rc $?"
cp $OUT/bench.md $L/ 2>/dev/null; cp $OUT/bench.json $L/ 2>/dev/null; rm -f $OUT/bench.md $OUT/bench.json
timeout 120 build/flashgrad bench decode --device cuda --json $L/decode.json > $L/decode.log 2>&1; el "bench decode rc $?"
cat $L/decode.log | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench decode --device cuda --batch 1 --tokens 200 --no-kv-cache > $L/decode-nocache.log 2>&1; el "bench decode no cache rc $?"
tail -3 $L/decode-nocache.log | tee -a $FINAL/summary.txt
pack
# Sanitizers, in parallel: racecheck one process per tagged test case; memcheck every binary.
l=$(( $(left) - 15 ))
rc_case() {  # binary, test name, log
  timeout $l compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/$1 "$2" > $L/$3.log 2>&1
  echo "racecheck $1 '$2': rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/$3.log | tail -1) | cases $(grep -E 'test cases' $L/$3.log | tail -1)" >> $L/racecheck-summary.txt
}
rc_case test_attention_kernels "attention cuda block masks" rk1 &
rc_case test_attention_kernels "attention cuda deterministic mode is bit-reproducible" rk2 &
rc_case test_attention_tc "attention tc: block masks" rt1 &
rc_case test_attention_tc "attention tc: fp32 forward (3xTF32)" rt2 &
mc() {
  n=$(build/tests/$1 "[cuda]~[oom]" --list-test-names-only 2>/dev/null | grep -c .)
  [ "$n" -eq 0 ] && { echo "memcheck $1: no cuda cases" >> $L/memcheck-summary.txt; return; }
  timeout $l compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$1 "[cuda]~[oom]" > $L/mc-$1.log 2>&1
  echo "memcheck $1: rc $? $(grep -E 'ERROR SUMMARY' $L/mc-$1.log | tail -1) | $(grep -E 'test cases' $L/mc-$1.log | tail -1)" >> $L/memcheck-summary.txt
}
export -f mc; export L l
ls build/tests | grep '^test_' | xargs -P 6 -I{} bash -c 'mc {}'
wait
el "sanitizers done"; cat $L/memcheck-summary.txt $L/racecheck-summary.txt | tee -a $FINAL/summary.txt
pack; el done
