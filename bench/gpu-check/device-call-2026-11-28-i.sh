#!/bin/bash
# Device call (session 4, call 3): split reductions with f32 results for 16-bit sums, warp-per-row
# LayerNorm, four-at-a-time dropout. Builds everything; `bench ops`; the `cuda` tests; memcheck
# on the tests of the changed kernels; bench/compare_train.py on small, gpt12 and gpt24; the
# small preset's full training run for the val-loss check.
#   bash bench/gpu-check/device-call-2026-11-28-i.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
ctest_cuda 150
memcheck 60 test_reduce test_nn_ops test_nn test_elementwise test_autograd
pack
for p in small gpt12 gpt24; do
  timeout 150 python3 bench/compare_train.py --preset $p --device cuda --dtype bf16 --modes eager,compile \
    --steps 20 --warmup 5 --flashgrad build/flashgrad --out-json $L/train-$p.json > $L/train-$p.log 2>&1
  el "compare_train $p rc $?"; grep -v -i warn $L/train-$p.log | tail -7 | tee -a $FINAL/summary.txt
  pack
done
timeout 170 build/flashgrad train --preset small --device cuda --dtype bf16 --out /tmp/small \
  --eval-interval 250 --log-interval 500 --sample-tokens 0 > $L/train-small-run.log 2>&1
el "train small rc $?"; grep -E "best val|done:|step +(250|3750|5000) " $L/train-small-run.log | tail -5 | tee -a $FINAL/summary.txt
pack
el done
