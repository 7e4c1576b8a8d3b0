#!/bin/bash
# Device call (session 6, call 3): LayerNorm's forward keeps the row in registers and reads w, b
# as 16-byte vectors; the fused backward reads w once per lane. test_nn_ops on CUDA (with
# misaligned weight views) and memcheck on its LayerNorm cases; bench ops; compare_train at
# gpt12 and at gpt24 batch 32 beside PyTorch.
# (After this call the LayerNorm change was reverted: its backward got slower, 50.5 -> 63.4 us.)
#   bash bench/gpu-check/device-call-2026-11-28-v.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build flashgrad_cli test_nn_ops
build/tests/test_nn_ops "[cuda]" > $L/t-nn_ops.log 2>&1; el "test_nn_ops cuda rc $? $(tail -2 $L/t-nn_ops.log | head -1)"
grep -B3 -A14 FAILED $L/t-nn_ops.log | head -40 | tee -a $FINAL/summary.txt
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/test_nn_ops "[layer_norm][cuda]" > $L/mc-ln.log 2>&1
el "memcheck test_nn_ops layer_norm rc $? $(grep -E 'ERROR SUMMARY' $L/mc-ln.log | tail -1)"
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
pack
run_compare gpt12 --preset gpt12 --steps 20 --warmup 5
run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3
el done
