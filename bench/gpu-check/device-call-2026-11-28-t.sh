#!/bin/bash
# Device call (session 6, call 1): attention dropout on 8 random bits per element (one Philox
# call per 16 elements, handed to the lanes by shuffle transposes). Builds everything; the
# `cuda` tests (the tensor-core kernels' dropout is compared with the CPU bit for bit there);
# memcheck on the attention and linear tests; bench attention at the gpt12 shape with and
# without dropout; bench train gpt12 with and without dropout (call p: 34.21 and 28.26 ms/step);
# bench/compare_train.py at gpt12 beside PyTorch 2.11.
#   bash bench/gpu-check/device-call-2026-11-28-t.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build
ctest_cuda 200
memcheck 150 test_attention_dropout test_attention_tc test_linear
pack
for pd in 0 0.1; do
  timeout 60 build/flashgrad bench attention --head-dim 64 --causal on --min-len 1024 --max-len 1024 \
    --tokens 16384 --hidden 768 --dropout $pd 2>&1 | tail -2 | tee -a $FINAL/summary.txt
  el "bench attention dropout $pd rc $?"
done
for pd in 0.1 0; do
  timeout 60 build/flashgrad bench train --preset gpt12 --dropout $pd --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt
  el "bench train gpt12 dropout $pd rc $?"
done
pack
timeout 170 python3 bench/compare_train.py --device cuda --dtype bf16 --modes eager,compile \
  --flashgrad build/flashgrad --out-json $L/train-gpt12.json --preset gpt12 --steps 20 --warmup 5 \
  > $L/train-gpt12.log 2>&1
el "compare_train gpt12 rc $?"; grep -v -i warn $L/train-gpt12.log | tail -7 | tee -a $FINAL/summary.txt
pack
el done
