#!/bin/bash
# Device call (session 5, call 2): the linear layer on cuBLASLt epilogues (bias, GELU with its
# saved input, bias gradient). Its tests and memcheck on CUDA, the GPT tests, and bench train
# at gpt12 and small against the figures of call l (41.64 ms/step at gpt12).
#   bash bench/gpu-check/device-call-2026-11-28-m.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
build flashgrad_cli test_linear test_matmul test_nn
for t in test_linear test_matmul test_nn; do
  build/tests/$t "[cuda]" > $L/t-$t.log 2>&1; el "$t cuda rc $? $(tail -2 $L/t-$t.log | head -1)"
  grep -B3 -A14 FAILED $L/t-$t.log | head -40 | tee -a $FINAL/summary.txt
done
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/test_linear "[cuda]" > $L/mc-test_linear.log 2>&1
el "memcheck test_linear rc $? $(grep -E 'ERROR SUMMARY' $L/mc-test_linear.log | tail -1)"
for p in gpt12 small gpt24; do
  timeout 90 build/flashgrad bench train --preset $p --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train $p rc $?"
done
timeout 200 ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
  build/flashgrad bench train --preset gpt12 --steps 1 --warmup 1 > $FINAL/ncu-gpt12.csv 2> $L/ncu.err
el "ncu rc $?"
tar czf $FINAL/logs.tgz -C $FINAL l && rm -rf $L
el done
