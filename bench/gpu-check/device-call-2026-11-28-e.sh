#!/bin/bash
# Device call (session 3, call 3): after the split-KV kernel's step-wise softmax and varlen
# attention. Build; the `cuda` tests; gradcheck (varlen rows on CUDA); the decode kernel's
# bandwidth; `bench decode` beside bench/compare_sample.py (eager, CUDA graph, torch.compile)
# in the same call; memcheck of the new tests, racecheck of the decode kernel's case.
#   bash bench/gpu-check/device-call-2026-11-28-e.sh     (repository root, .deps carried)
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p $L
T0=$(date +%s); BUDGET=${BUDGET:-400}
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
pack() { tar czf $FINAL/logs.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $FINAL/summary.txt
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 16 >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -20 | tee -a $FINAL/summary.txt
ctest --test-dir build -L cuda --output-on-failure -j 4 --timeout 150 > $L/ctest-cuda.log 2>&1; el "ctest cuda rc $? $(grep -E 'tests passed|tests failed' $L/ctest-cuda.log)"
grep -A8 "The following tests FAILED" $L/ctest-cuda.log | tee -a $FINAL/summary.txt
grep -B3 -A14 "FAILED:" $L/ctest-cuda.log | head -60 | tee -a $FINAL/summary.txt
build/tests/test_attention_decode "[cuda]" -s 2>/dev/null | grep "^measured" > $L/measured-splitkv.txt
timeout 60 build/flashgrad gradcheck attention --device cuda > $L/gradcheck-cuda.log 2>&1; el "gradcheck cuda rc $? $(tail -1 $L/gradcheck-cuda.log)"
grep varlen $L/gradcheck-cuda.log | tee -a $FINAL/summary.txt
pack
timeout 40 build/flashgrad bench decode-attention --json $L/dattn-mha.json > $L/dattn-mha.log 2>&1; el "decode-attention MHA rc $?"; cat $L/dattn-mha.log | tee -a $FINAL/summary.txt
timeout 40 build/flashgrad bench decode-attention --heads 32 --kv-heads 8 --head-dim 128 --json $L/dattn-gqa.json > $L/dattn-gqa.log 2>&1; el "decode-attention GQA rc $?"; cat $L/dattn-gqa.log | tee -a $FINAL/summary.txt
timeout 40 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 1024,4096,8192,32768 > $L/dattn-gqa-b8.log 2>&1; el "decode-attention GQA b8 rc $?"; cat $L/dattn-gqa-b8.log | tee -a $FINAL/summary.txt
timeout 80 build/flashgrad bench decode --device cuda --json $L/decode.json > $L/decode.log 2>&1; el "bench decode rc $?"; cat $L/decode.log | tee -a $FINAL/summary.txt
pack
timeout 130 python3 bench/compare_sample.py --flashgrad-json $L/decode.json --modes eager,graph,compile --span-buckets 1 --max-seconds 10 \
  --out-json $L/sample.json --out-md $L/sample.md > $L/compare.log 2>&1; el "compare_sample rc $?"
cat $L/sample.md | tee -a $FINAL/summary.txt; tail -4 $L/compare.log | tee -a $FINAL/summary.txt
pack
l=$(( $(left) - 8 ))
( timeout $l compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode "attention decode: GQA and MQA groups and several new tokens" > $L/rc-decode.log 2>&1
  echo "racecheck decode: rc $? $(grep -E 'RACECHECK SUMMARY' $L/rc-decode.log | tail -1) | $(grep -E 'test cases|All tests passed' $L/rc-decode.log | tail -1)" >> $L/san.txt ) &
for t in test_attention_decode test_attention_varlen test_attention_tc; do
  ( timeout $l compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$t "[cuda]~[oom]" > $L/mc-$t.log 2>&1
    echo "memcheck $t: rc $? $(grep -E 'ERROR SUMMARY' $L/mc-$t.log | tail -1) | $(grep -E 'test cases|All tests passed' $L/mc-$t.log | tail -1)" >> $L/san.txt ) &
done
wait
el "sanitizers done"; cat $L/san.txt | tee -a $FINAL/summary.txt
pack; el done
