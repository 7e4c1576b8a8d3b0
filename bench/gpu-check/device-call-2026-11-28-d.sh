#!/bin/bash
# Device call (session 3, call 2): the split-KV decode kernel and the batched sampler.
# Build; the `cuda` tests; gradcheck; the decode kernel's bandwidth over cache lengths (beside
# the tiled kernel); `bench decode` and the PyTorch KV-cache loops of bench/compare_sample.py
# in the same call; then memcheck of the changed tests and racecheck of every [racecheck] case,
# one process each, in parallel.
#   bash bench/gpu-check/device-call-2026-11-28-d.sh     (repository root, .deps carried)
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p $L
T0=$(date +%s); BUDGET=${BUDGET:-540}
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
pack() { tar czf $FINAL/logs.tgz -C $L . 2>/dev/null; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee -a $FINAL/summary.txt
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 16 >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -20 | tee -a $FINAL/summary.txt
ctest --test-dir build -L cuda --output-on-failure -j 4 --timeout 200 > $L/ctest-cuda.log 2>&1; el "ctest cuda rc $? $(grep -E 'tests passed|tests failed' $L/ctest-cuda.log)"
grep -A8 "The following tests FAILED" $L/ctest-cuda.log | tee -a $FINAL/summary.txt
grep -B3 -A14 "FAILED:" $L/ctest-cuda.log | head -80 | tee -a $FINAL/summary.txt
build/tests/test_attention_decode "[cuda]" -s 2>/dev/null | grep "^measured" > $L/measured-splitkv.txt
pack
timeout 60 build/flashgrad bench decode-attention --json $L/dattn-mha.json > $L/dattn-mha.log 2>&1; el "decode-attention MHA rc $?"; cat $L/dattn-mha.log | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench decode-attention --heads 32 --kv-heads 8 --head-dim 128 --json $L/dattn-gqa.json > $L/dattn-gqa.log 2>&1; el "decode-attention GQA rc $?"; cat $L/dattn-gqa.log | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 1024,4096,8192,32768 > $L/dattn-gqa-b8.log 2>&1; el "decode-attention GQA b8 rc $?"; cat $L/dattn-gqa-b8.log | tee -a $FINAL/summary.txt
timeout 90 build/flashgrad bench decode --device cuda --json $L/decode.json > $L/decode.log 2>&1; el "bench decode rc $?"; cat $L/decode.log | tee -a $FINAL/summary.txt
pack
timeout 150 python3 bench/compare_sample.py --flashgrad-json $L/decode.json --modes eager,graph --max-seconds 15 \
  --out-json $L/sample-eg.json --out-md $L/sample-eg.md > $L/compare-eg.log 2>&1; el "compare_sample eager,graph rc $?"
cat $L/sample-eg.md | tee -a $FINAL/summary.txt; tail -5 $L/compare-eg.log | tee -a $FINAL/summary.txt
pack
l=$(( $(left) - 200 )); [ $l -gt 150 ] && l=150
[ $l -gt 40 ] && { timeout $l python3 bench/compare_sample.py --flashgrad-json $L/decode.json --modes compile --batch 1,64 --span-buckets 1 --max-seconds 15 \
  --out-json $L/sample-c.json --out-md $L/sample-c.md > $L/compare-c.log 2>&1; el "compare_sample compile rc $?"; cat $L/sample-c.md | tee -a $FINAL/summary.txt; tail -5 $L/compare-c.log | tee -a $FINAL/summary.txt; }
pack
timeout 60 build/flashgrad gradcheck attention --device cuda > $L/gradcheck-cuda.log 2>&1; el "gradcheck cuda rc $? $(tail -1 $L/gradcheck-cuda.log)"
# Sanitizers in parallel with the time left.
l=$(( $(left) - 10 ))
rc_case() {  # binary, test name, log
  timeout $l compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/$1 "$2" > $L/$3.log 2>&1
  echo "racecheck $1 '$2': rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/$3.log | tail -1) | $(grep -E 'test cases|All tests passed' $L/$3.log | tail -1)" >> $L/racecheck-summary.txt
}
rc_case test_attention_kernels "attention cuda race check: bf16" rc1 &
rc_case test_attention_kernels "attention cuda race check: f16" rc2 &
rc_case test_attention_kernels "attention cuda race check: f32 and f64" rc3 &
rc_case test_attention_decode "attention decode: GQA and MQA groups, several new tokens, fused strides" rc4 &
mc() {
  timeout $l compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$1 "[cuda]~[oom]" > $L/mc-$1.log 2>&1
  echo "memcheck $1: rc $? $(grep -E 'ERROR SUMMARY' $L/mc-$1.log | tail -1) | $(grep -E 'test cases|All tests passed' $L/mc-$1.log | tail -1)" >> $L/memcheck-summary.txt
}
mc test_attention_decode & mc test_generate & mc test_attention_kernels & mc test_attention_ops &
wait
el "sanitizers done"; cat $L/memcheck-summary.txt $L/racecheck-summary.txt | tee -a $FINAL/summary.txt
pack; el done
