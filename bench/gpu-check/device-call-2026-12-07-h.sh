#!/bin/bash
# Device call (2026-12-07, call h): the one-launch cluster form of the split-KV decode kernel
# (kernels/attention/decode/cluster.cuh) against the split + combine pair
# (FLASHGRAD_DECODE_TWO_KERNELS=1): tests, bandwidth with the cache cold in L2 (the bench's new
# default) and warm (--warm-l2, as before), bench decode (tokens/s); LayerNorm with 16-byte
# weight loads (bench ops, test_nn_ops); memcheck and racecheck on the decode tests; ncu on
# the cluster kernel at 8k keys; the vector column reduction (test_reduce, bench ops).
#   LIMIT=560 bash bench/gpu-check/device-call-2026-12-07-h.sh   (repository root, .deps carried)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-560}
build
for two in 0 1; do
  FLASHGRAD_DECODE_TWO_KERNELS=$two timeout 60 build/tests/test_attention_decode "[cuda]" > $L/decode-two$two.log 2>&1
  el "test_attention_decode [cuda] two-kernels=$two rc $? $(grep -E 'All tests passed|test cases:' $L/decode-two$two.log | tail -1)"
  grep -B2 -A10 FAILED $L/decode-two$two.log | head -30 | tee -a $FINAL/summary.txt
done
timeout 90 build/tests/test_generate "[cuda]" > $L/generate.log 2>&1
el "test_generate [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/generate.log | tail -1)"
for t in test_nn_ops test_reduce; do
  timeout 60 build/tests/$t "[cuda]" > $L/$t.log 2>&1
  el "$t [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/$t.log | tail -1)"
  grep -B2 -A10 FAILED $L/$t.log | head -20 | tee -a $FINAL/summary.txt
done
pack
for two in 0 1; do
  FLASHGRAD_DECODE_TWO_KERNELS=$two timeout 40 build/flashgrad bench decode-attention \
    --json $L/dattn-mha-two$two.json > $L/dattn-mha-two$two.log 2>&1
  FLASHGRAD_DECODE_TWO_KERNELS=$two timeout 40 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 \
    --head-dim 128 --lens 4096,8192,16384,32768 --json $L/dattn-gqa-two$two.json > $L/dattn-gqa-two$two.log 2>&1
  el "decode-attention two-kernels=$two (L us GB/s):"
  grep -hE '^ +[0-9]+ \|' $L/dattn-mha-two$two.log $L/dattn-gqa-two$two.log | awk '{print "   ", $1, $3, $5}' | tee -a $FINAL/summary.txt
done
FLASHGRAD_DECODE_TWO_KERNELS=0 timeout 30 build/flashgrad bench decode-attention --warm-l2 --lens 8192,32768 \
  --json $L/dattn-mha-warm.json > $L/dattn-mha-warm.log 2>&1
el "warm L2, cluster: $(grep -hE '^ +[0-9]+ \|' $L/dattn-mha-warm.log | awk '{print $1, $3, $5}' | tr '\n' ' ')"
pack
for two in 0 1; do
  FLASHGRAD_DECODE_TWO_KERNELS=$two timeout 60 build/flashgrad bench decode --device cuda --json $L/decode-two$two.json > $L/decode-two$two.log 2>&1
  el "bench decode two-kernels=$two rc $?"; tail -5 $L/decode-two$two.log | tee -a $FINAL/summary.txt
done
timeout 60 build/flashgrad bench ops --reps 5 > $L/ops.log 2>&1
el "bench ops rc $?"; grep -iE "copy|layer_norm|sum" $L/ops.log | tee -a $FINAL/summary.txt
pack
memcheck 90 test_attention_decode test_reduce
timeout 100 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: GQA and MQA groups and several new tokens" > $L/racecheck-decode.log 2>&1
el "racecheck decode rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode.log | tail -1)"
pack
left=$(( LIMIT - 15 - ($(date +%s) - T0) ))
[ $left -gt 30 ] && timeout $left ncu --set full -k regex:cluster_kernel --launch-skip 3 --launch-count 1 \
  build/flashgrad bench decode-attention --lens 8192 --seconds 0.05 > $L/ncu-cluster-8192.txt 2>&1
el "ncu cluster_kernel rc $?"
grep -E "DRAM Throughput|Duration|Memory Throughput|Registers Per|Achieved Occupancy|Waves Per SM" $L/ncu-cluster-8192.txt | head -12 | tee -a $FINAL/summary.txt
pack
el done
