#!/bin/bash
# Device call (session 5, call 3): the linear layer on cuBLASLt epilogues, the fused residual
# dropout (dropout_add, vector loads), the QKV split node. Builds everything; the `cuda` tests;
# memcheck on the changed kernels' tests; bench ops; bench train on the three configs.
#   bash bench/gpu-check/device-call-2026-11-28-n.sh     (repository root; carry .deps)
source bench/gpu-check/lib.sh
build
ctest_cuda 200
pack
memcheck 70 test_linear test_nn_ops test_nn test_autograd
pack
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
for p in gpt12 small gpt24; do
  timeout 60 build/flashgrad bench train --preset $p --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train $p rc $?"
done
pack
el done
