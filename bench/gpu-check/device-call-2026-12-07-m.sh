#!/bin/bash
# Call m (2026-12-07, second session): the GPU checks of commits 9290224 and 3c159f9 (decode
# cluster form's host-side fixes, the long-cache KV test), bench ops as this session's baseline,
# and the first
# GPU run of two changes: dropout on 16 random bits an element (one Philox call per 8), the
# LayerNorm forward holding its row in registers, the fused backward issuing a row's loads
# before their first use, with its gw/gb sums in shared memory or registers (A/B against the
# earlier forms in one run).
#   LIMIT=560 bash bench/gpu-check/device-call-2026-12-07-m.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-560}
build
ctest_cuda 150
memcheck 60 test_attention_decode test_attention_ops test_nn_ops
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one row per kv head under racecheck" > $L/racecheck-decode-row.log 2>&1
el "racecheck one row per kv head rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode-row.log | tail -1)"
timeout 30 build/flashgrad bench decode-attention --json $L/dattn-mha.json > $L/dattn-mha.log 2>&1
el "decode-attention rc $?"; grep -E '^ +[0-9]+ \|' $L/dattn-mha.log | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench ops --reps 5 > $L/ops.log 2>&1
el "bench ops rc $?"; grep -E "^ +[a-z]" $L/ops.log | tee -a $FINAL/summary.txt
FLASHGRAD_LN_BACKWARD=registers timeout 60 build/flashgrad bench ops --reps 5 > $L/ops-regs.log 2>&1
el "bench ops, LayerNorm backward's sums in registers, rc $?"; grep -E "^ +(copy|layer_norm|dropout)" $L/ops-regs.log | tee -a $FINAL/summary.txt
FLASHGRAD_LN_FORWARD=loop FLASHGRAD_LN_BACKWARD=interleaved timeout 60 build/flashgrad bench ops --reps 5 > $L/ops-loop.log 2>&1
el "bench ops, LayerNorm's loop forward and interleaved backward, rc $?"; grep -E "^ +(copy|layer_norm|dropout)" $L/ops-loop.log | tee -a $FINAL/summary.txt
timeout 40 build/flashgrad bench ops --n-embd 1024 --tokens 32768 --params 1 --reps 5 > $L/ops-1024.log 2>&1
el "bench ops at width 1024 (gpt24's rows) rc $?"; grep -E "^ +(copy|layer_norm|dropout|gelu)" $L/ops-1024.log | tee -a $FINAL/summary.txt
FLASHGRAD_LN_BACKWARD=registers timeout 60 build/tests/test_nn_ops "[layer_norm]" > $L/ln-registers.log 2>&1
el "test_nn_ops [layer_norm], backward's register form, rc $? $(tail -2 $L/ln-registers.log | head -1)"
pack
left=$(( LIMIT - 10 - ($(date +%s) - T0) ))
if [ $left -gt 180 ]; then run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3; else el "no time for gpt24 ($left s left)"; fi
pack
el done
