#!/bin/bash
# Device call (session 5, call 8, short): after the review of the linear-layer round: exact
# per-kernel workspaces, heuristic errors no longer silent, the epilogue-launch counter test,
# the DGELU ctest entry, the fused LayerNorm backward's grid from its occupancy. The changed
# tests on CUDA (test_linear also with FLASHGRAD_DGELU_EPILOGUE=1), memcheck on them, and
# bench train at gpt12 and gpt24 against calls p/q.
#   bash bench/gpu-check/device-call-2026-11-28-s.sh     (repository root; carry .deps)
source bench/gpu-check/lib.sh
build flashgrad_cli test_linear test_nn_ops test_nn
for t in test_linear test_nn_ops test_nn; do
  build/tests/$t "[cuda]" > $L/t-$t.log 2>&1; el "$t cuda rc $? $(tail -2 $L/t-$t.log | head -1)"
  grep -B3 -A14 FAILED $L/t-$t.log | head -40 | tee -a $FINAL/summary.txt
done
FLASHGRAD_DGELU_EPILOGUE=1 build/tests/test_linear "[cuda]" > $L/t-linear-1.log 2>&1
el "test_linear cuda (DGELU epilogue) rc $? $(tail -2 $L/t-linear-1.log | head -1)"
grep -B3 -A14 FAILED $L/t-linear-1.log | head -30 | tee -a $FINAL/summary.txt
memcheck 60 test_linear test_nn_ops
pack
for p in gpt12 gpt24; do
  timeout 40 build/flashgrad bench train --preset $p --steps 8 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train $p rc $?"
done
timeout 20 build/flashgrad bench ops 2>&1 | grep -E "copy|layer_norm" | tee -a $FINAL/summary.txt
pack
el done
