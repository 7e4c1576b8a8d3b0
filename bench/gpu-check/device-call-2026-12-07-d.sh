#!/bin/bash
# Device call (2026-12-07, call d): call a's measurement of the graphed decode step, trimmed,
# then the fp32 forward's accuracy against PyTorch's fp32 SDPA (the attention issue's 2x rule):
# the 3xTF32 forward as it was (products accumulated in the tensor cores), with each step's
# products added by an fp32 add (FLASHGRAD_TF32X3_FRESH=1), and the SIMT kernels; then
# bench/fp32_accuracy.py on the same shapes and compare_sdpa.py for the speed.
#   LIMIT=585 bash bench/gpu-check/device-call-2026-12-07-d.sh   (repository root, .deps carried)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-600}
build
for t in test_graph test_attention_ops test_generate test_attention_decode; do
  timeout 100 build/tests/$t "[cuda]" > $L/$t.log 2>&1
  el "$t [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/$t.log | tail -1)"
  grep -B3 -A12 "FAILED" $L/$t.log | head -40 | tee -a $FINAL/summary.txt
done
pack
timeout 60 build/flashgrad bench decode --device cuda --json $L/decode.json 2>&1 | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench decode --device cuda --no-cuda-graph --json $L/decode-nograph.json 2>&1 | tee -a $FINAL/summary.txt
el "bench decode done"; pack
timeout 130 python3 bench/compare_sample.py --flashgrad-json $L/decode.json --flashgrad-json $L/decode-nograph.json \
  --modes graph,compile --span-buckets 1 --max-seconds 8 --out-json $L/sample.json --out-md $L/sample.md > $L/compare.log 2>&1
el "compare_sample rc $?"; cat $L/sample.md | tee -a $FINAL/summary.txt; tail -3 $L/compare.log >> $FINAL/summary.txt; pack
for pf in 0 1; do
  FLASHGRAD_DECODE_PREFETCH=$pf timeout 25 build/flashgrad bench decode-attention --json $L/dattn-mha-pf$pf.json 2>&1 | tee -a $FINAL/summary.txt
  FLASHGRAD_DECODE_PREFETCH=$pf timeout 25 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 4096,8192,32768 --json $L/dattn-gqa-pf$pf.json 2>&1 | tee -a $FINAL/summary.txt
done
FLASHGRAD_DECODE_PREFETCH=1 timeout 40 build/tests/test_attention_decode "[cuda]" > $L/decode-prefetch-test.log 2>&1
el "test_attention_decode [cuda] with prefetch rc $? $(grep -E 'All tests passed|test cases:' $L/decode-prefetch-test.log | tail -1)"
pack
# fp32 accuracy and speed: three settings of the same grid.
A="bench attention --dtype fp32 --head-dim 64,128 --causal both --min-len 1024 --max-len 4096 --seconds 0.3 --reps 5"
timeout 60 build/flashgrad $A --json $L/fp32-chain.json > $L/fp32-chain.log 2>&1; el "fp32 chain rc $?"
FLASHGRAD_TF32X3_FRESH=1 timeout 60 build/flashgrad $A --json $L/fp32-fresh.json > $L/fp32-fresh.log 2>&1; el "fp32 fresh rc $?"
FLASHGRAD_ATTENTION_SIMT=1 timeout 90 build/flashgrad $A --json $L/fp32-simt.json > $L/fp32-simt.log 2>&1; el "fp32 simt rc $?"
pack
timeout 120 python3 bench/fp32_accuracy.py --flashgrad-json $L/fp32-chain.json --label "3xTF32 chained" \
  --flashgrad-json $L/fp32-fresh.json --label "3xTF32 fresh" --flashgrad-json $L/fp32-simt.json --label SIMT \
  --seeds 3 --out-json $L/fp32-accuracy.json --out-md $L/fp32-accuracy.md > $L/fp32-accuracy.log 2>&1
el "fp32_accuracy rc $?"; cat $L/fp32-accuracy.md >> $FINAL/summary.txt; tail -3 $L/fp32-accuracy.log >> $FINAL/summary.txt
pack
for s in chain fresh; do
  left=$(( LIMIT - 20 - ($(date +%s) - T0) ))
  [ $left -gt 30 ] && timeout $left python3 bench/compare_sdpa.py --flashgrad-json $L/fp32-$s.json --seconds 0.2 --reps 5 \
    --out-md $L/fp32-sdpa-$s.md > $L/fp32-sdpa-$s.log 2>&1 && cat $L/fp32-sdpa-$s.md >> $FINAL/summary.txt
  el "compare_sdpa fp32 $s"
done
pack
left=$(( LIMIT - 40 - ($(date +%s) - T0) ))
[ $left -gt 60 ] && memcheck $(( left / 2 )) test_generate test_attention_decode
pack
el done
