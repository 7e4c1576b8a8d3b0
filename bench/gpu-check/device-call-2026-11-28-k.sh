#!/bin/bash
# Device call (session 4, call 5, short): after the review clean-up (CUDA AdamW as a batch of
# one, core's block_sum and cached SM count in the new kernels, the LayerNorm rows on the
# launcher's Vec, one event timer for the benchmarks). The changed kernels' tests and memcheck,
# and each benchmark that now times through cli/bench_timing.h.
#   bash bench/gpu-check/device-call-2026-11-28-k.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
build flashgrad_cli test_adamw test_elementwise test_reduce test_nn_ops test_nn
for t in test_adamw test_elementwise test_reduce test_nn_ops test_nn; do
  build/tests/$t "[cuda]" > $L/t-$t.log 2>&1; el "$t cuda rc $? $(tail -2 $L/t-$t.log | head -1)"
  grep -A12 FAILED $L/t-$t.log | head -30 | tee -a $FINAL/summary.txt
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$t "[cuda]" > $L/mc-$t.log 2>&1
  el "memcheck $t rc $? $(grep -E 'ERROR SUMMARY' $L/mc-$t.log | tail -1)"
done
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
timeout 60 build/flashgrad bench decode-attention 2>&1 | tee -a $FINAL/summary.txt; el "bench decode-attention rc $?"
timeout 120 build/flashgrad bench attention --head-dim 64 --causal on --min-len 1024 --max-len 4096 2>&1 | tee -a $FINAL/summary.txt; el "bench attention rc $?"
timeout 60 build/flashgrad bench train --preset small --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train rc $?"
tar czf $FINAL/logs.tgz -C $FINAL l && rm -rf $L
el done
