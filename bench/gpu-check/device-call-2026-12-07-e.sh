#!/bin/bash
# Device call (2026-12-07, call e): the fp32 attention forward after call d. The 3xTF32 kernel
# now adds each step's products with an fp32 add (no chained tensor-core accumulation) and is
# chosen only with FLASHGRAD_ALLOW_TF32=1; the default fp32 forward is the SIMT one. The whole
# `cuda` label, test_attention_tc with and without FLASHGRAD_ALLOW_TF32, memcheck on the
# attention and decode tests, the fp32 grid (default and ALLOW_TF32) beside PyTorch's efficient
# backend and accuracy, and Nsight Compute on the split-KV decode kernel at 8k keys.
#   LIMIT=585 bash bench/gpu-check/device-call-2026-12-07-e.sh   (repository root, .deps carried)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-600}
build
FLASHGRAD_ALLOW_TF32=1 timeout 90 build/tests/test_attention_tc "[cuda]" > $L/tc-allow-tf32.log 2>&1
el "test_attention_tc [cuda] FLASHGRAD_ALLOW_TF32=1 rc $? $(grep -E 'All tests passed|test cases:' $L/tc-allow-tf32.log | tail -1)"
grep -B3 -A12 "FAILED" $L/tc-allow-tf32.log | head -30 | tee -a $FINAL/summary.txt
ctest_cuda 240
pack
A="bench attention --dtype fp32 --head-dim 64,128 --causal both --min-len 1024 --max-len 4096 --seconds 0.3 --reps 5"
timeout 70 build/flashgrad $A --json $L/fp32-default.json > $L/fp32-default.log 2>&1; el "fp32 default rc $?"
FLASHGRAD_ALLOW_TF32=1 timeout 60 build/flashgrad $A --json $L/fp32-tf32.json > $L/fp32-tf32.log 2>&1; el "fp32 allow-tf32 rc $?"
grep -E "^ +(64|128) " $L/fp32-default.log $L/fp32-tf32.log | tee -a $FINAL/summary.txt
pack
timeout 90 python3 bench/fp32_accuracy.py --flashgrad-json $L/fp32-default.json --label "default (SIMT)" \
  --flashgrad-json $L/fp32-tf32.json --label "FLASHGRAD_ALLOW_TF32=1 (3xTF32)" --seeds 3 \
  --out-json $L/fp32-accuracy.json --out-md $L/fp32-accuracy.md > $L/fp32-accuracy.log 2>&1
el "fp32_accuracy rc $?"; grep flashgrad $L/fp32-accuracy.md >> $FINAL/summary.txt
for s in default tf32; do
  timeout 40 python3 bench/compare_sdpa.py --flashgrad-json $L/fp32-$s.json --seconds 0.2 --reps 5 \
    --out-md $L/fp32-sdpa-$s.md > $L/fp32-sdpa-$s.log 2>&1; el "compare_sdpa fp32 $s rc $?"
  grep "| fp32" $L/fp32-sdpa-$s.md >> $FINAL/summary.txt
done
pack
left=$(( LIMIT - 70 - ($(date +%s) - T0) ))
[ $left -gt 40 ] && memcheck $(( left / 3 )) test_attention_tc test_attention_kernels
left=$(( LIMIT - 15 - ($(date +%s) - T0) ))
[ $left -gt 30 ] && timeout $left ncu --set full -k regex:split_kernel --launch-skip 3 --launch-count 1 \
  build/flashgrad bench decode-attention --lens 8192 --seconds 0.05 > $L/ncu-8192.txt 2>&1; el "ncu rc $?"
pack
el done
