#!/bin/bash
# Device call (session 5, call 4): adds the one-pass LayerNorm backward (gx and the gw/gb
# partial sums together) and the MLP as one node with the GELU's derivative and c_fc's bias
# gradient in cuBLASLt's DGELU_BGRAD epilogue. Builds everything; the `cuda` tests; memcheck
# on the changed kernels' tests; bench ops; bench train on the three configs; the small
# preset's full training run for the val-loss check.
#   bash bench/gpu-check/device-call-2026-11-28-o.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build
ctest_cuda 200
pack
memcheck 70 test_linear test_nn_ops test_nn
pack
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
for p in gpt12 small gpt24; do
  timeout 60 build/flashgrad bench train --preset $p --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train $p rc $?"
done
pack
timeout 200 build/flashgrad train --preset small --device cuda --dtype bf16 --out /tmp/small \
  --eval-interval 250 --log-interval 500 --sample-tokens 0 > $L/train-small-run.log 2>&1
el "train small rc $?"; grep -E "best val|done:|step +(250|3750|5000) " $L/train-small-run.log | tail -5 | tee -a $FINAL/summary.txt
pack
el done
