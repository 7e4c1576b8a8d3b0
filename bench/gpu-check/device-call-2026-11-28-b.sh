#!/bin/bash
# Second, short device call: rebuild, cuda tests with the measured bounds, gradcheck, memcheck of
# the changed tests, racecheck of the tensor-core kernels with what time is left.
# Run from the repository root on the GPU machine, with .deps carried:
#   bash bench/gpu-check/device-call-2026-11-28-b.sh
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p $L
T0=$(date +%s); BUDGET=${BUDGET:-230}
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
pack() { tar czf $FINAL/logs.tgz -C $L . 2>/dev/null; }
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 16 >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -20
ctest --test-dir build -L cuda --output-on-failure -j 4 > $L/ctest-cuda.log 2>&1; el "ctest cuda rc $? $(grep -E 'tests passed|tests failed' $L/ctest-cuda.log)"
grep -A6 "The following tests FAILED" $L/ctest-cuda.log | tee -a $FINAL/summary.txt
grep -B2 -A12 "FAILED:" $L/ctest-cuda.log | head -60 | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad gradcheck attention --device cuda > $L/gradcheck-cuda.log 2>&1; el "gradcheck cuda rc $? $(tail -1 $L/gradcheck-cuda.log)"
for t in attention_dropout attention attention_kernels; do
  l=$(( $(left) - 60 )); [ $l -lt 10 ] && break
  timeout $l compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/test_$t "[cuda]~[oom]" > $L/memcheck-$t.log 2>&1
  el "memcheck $t rc $? $(grep -E 'ERROR SUMMARY' $L/memcheck-$t.log | tail -1)"
done
pack
l=$(( $(left) - 3 ))
[ $l -gt 15 ] && { timeout $l compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_tc "[cuda][racecheck]" > $L/racecheck-tc.log 2>&1; el "racecheck tc rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-tc.log | tail -1) hazards $(grep -ci hazard $L/racecheck-tc.log) measured-lines $(grep -c ^measured $L/racecheck-tc.log)"; }
pack; el done
