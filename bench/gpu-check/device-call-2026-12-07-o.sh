#!/bin/bash
# Call o (2026-12-07, second session, the last device seconds): the tree as it stands after the
# LayerNorm A/B was settled (commit 4cdae9e and after): its nn tests on the GPU, memcheck, and
# bench ops' LayerNorm and dropout rows.
#   LIMIT=150 bash bench/gpu-check/device-call-2026-12-07-o.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-150}
build flashgrad_cli test_nn_ops
timeout 30 build/tests/test_nn_ops "[cuda]" > $L/nn-ops-cuda.log 2>&1
el "test_nn_ops [cuda] rc $? $(tail -2 $L/nn-ops-cuda.log | head -1)"
memcheck 30 test_nn_ops
timeout 30 build/flashgrad bench ops --reps 5 > $L/ops.log 2>&1
el "bench ops rc $?"; grep -E "^ +(copy|layer_norm|dropout)" $L/ops.log | tee -a $FINAL/summary.txt
pack
el done
