#!/bin/bash
# Device call (session 4, call 2): the issue-14 kernels. Builds everything; `bench ops`;
# bench/compare_train.py (flashgrad `bench train` beside PyTorch eager and torch.compile, bf16)
# on small, gpt12 and gpt24; the `cuda` tests; memcheck on the tests of the changed kernels.
#   bash bench/gpu-check/device-call-2026-11-28-h.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
for p in small gpt12 gpt24; do
  timeout 150 python3 bench/compare_train.py --preset $p --device cuda --dtype bf16 --modes eager,compile \
    --steps 20 --warmup 5 --flashgrad build/flashgrad --out-json $L/train-$p.json > $L/train-$p.log 2>&1
  el "compare_train $p rc $?"; grep -v -i warn $L/train-$p.log | tail -8 | tee -a $FINAL/summary.txt
  pack
done
ctest_cuda 150
pack
memcheck 60 test_elementwise test_adamw test_reduce test_tensor test_nn_ops
pack
el done
