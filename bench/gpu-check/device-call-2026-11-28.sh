#!/bin/bash
# One device call: build (new + baseline), cuda tests, gradcheck, measured errors, A/B, memory,
# sanitizer (attention first), quick bench with what time is left. Everything lands in $OUT
# as it goes, so a cut-off call still brings back what finished.
# Run from the repository root on the GPU machine, with .deps (../shared/tools/device-deps.sh)
# and .baseline (the tree to A/B against: git archive 3407aeb | tar -x -C .baseline) carried:
#   FLASHGRAD_COMMIT=<hash> bash bench/gpu-check/device-call-2026-11-28.sh
set -o pipefail
FINAL=$OUT
L=$FINAL/l; mkdir -p $L
T0=$(date +%s)
BUDGET=${BUDGET:-575}
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
pack() { tar czf $FINAL/logs.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $FINAL/summary.txt
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
(cmake -S .baseline -B .baseline/build $C -DFLASHGRAD_TESTS=OFF > $L/base.log 2>&1 && cmake --build .baseline/build -j 4 --target flashgrad >> $L/base.log 2>&1; echo "base rc $?" >> $L/base.log) &
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 12 >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -20
ctest --test-dir build -L cuda --output-on-failure -j 2 > $L/ctest-cuda.log 2>&1; el "ctest cuda rc $? $(grep -E 'tests passed|tests failed' $L/ctest-cuda.log)"
grep -A3 "The following tests FAILED" $L/ctest-cuda.log | tee -a $FINAL/summary.txt
timeout 90 build/flashgrad gradcheck attention --device cuda > $L/gradcheck-cuda.log 2>&1; el "gradcheck cuda rc $? $(tail -1 $L/gradcheck-cuda.log)"
for t in attention_kernels attention_tc attention_ops attention attention_dropout; do
  timeout 60 build/tests/test_$t "[cuda]" -s 2>&1 | grep -E "^measured|FAILED|passed|failed" > $L/measured-$t.txt; done
cat $L/measured-*.txt | grep -E "^measured" > $L/measured-all.txt
awk '{k=$2" "$3" "$4; if(!(k in w) || $6+0>w[k]+0) {w[k]=$6; b[k]=$8}} END{for(k in w) printf "%s worst %s bound %s ratio %.3f\n", k, w[k], b[k], (b[k]>0?w[k]/b[k]:0)}' $L/measured-all.txt | sort > $FINAL/measured.txt
el "measured $(wc -l < $FINAL/measured.txt) lines"; pack
wait; el "$(tail -1 $L/base.log)"
OUT=$L timeout 120 bash bench/ab/run.sh .baseline 3 1.03 > $FINAL/ab.log 2>&1; el "ab rc $?"; tail -1 $FINAL/ab.log; pack
timeout 40 python3 bench/memprofile_sdpa.py --min-len 2048 --max-len 16384 --csv $L/sdpa-mem.csv > $L/sdpa-mem.log 2>&1
timeout 40 build/flashgrad memprofile --device cuda --impl flash --min-len 2048 --max-len 16384 --out $L/mp > $L/mp.log 2>&1
el "memory"; pack
for t in attention_kernels attention_tc attention_ops attention attention_dropout philox dropout_mask adamw nn_ops elementwise reduce matmul tensor autograd nn allocator train; do
  exe=build/tests/test_$t; [ -x $exe ] || continue
  n=$($exe "[cuda]~[oom]" --list-test-names-only 2>/dev/null | grep -c .); [ "$n" -eq 0 ] && continue
  l=$(( $(left) - 110 )); [ $l -lt 20 ] && { el "memcheck: no time for $t and after"; break; }
  timeout $l compute-sanitizer --tool memcheck --error-exitcode 9 $exe "[cuda]~[oom]" > $L/memcheck-$t.log 2>&1
  el "memcheck $t rc $? $(grep -E 'ERROR SUMMARY' $L/memcheck-$t.log | tail -1)"
done
for t in attention_kernels attention_tc; do
  l=$(( $(left) - 70 )); [ $l -lt 20 ] && { el "racecheck: no time for $t"; break; }
  timeout $l compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_$t "[cuda][racecheck]" > $L/racecheck-$t.log 2>&1
  el "racecheck $t rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-$t.log | tail -1)"
done
pack
l=$(( $(left) - 5 ))
if [ $l -gt 40 ]; then OUT=$L BENCH_QUICK=1 timeout $l bash bench/run.sh > $L/bench.log 2>&1; el "bench rc $?"; cp $L/bench.md $FINAL/ 2>/dev/null; fi
pack; el done
