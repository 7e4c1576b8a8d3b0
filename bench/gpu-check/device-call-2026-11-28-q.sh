#!/bin/bash
# Device call (session 5, call 6): the final tree of this round, with the DGELU epilogue off by
# default (call p: 37.2 against 34.2 ms/step at gpt12). Builds everything; the `cuda` tests,
# test_linear also with FLASHGRAD_DGELU_EPILOGUE=1; memcheck on the changed kernels' tests;
# bench ops (the DGELU rows both ways); bench train gpt12; the small preset's full training
# run for the val-loss check.
#   bash bench/gpu-check/device-call-2026-11-28-q.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build
ctest_cuda 200
FLASHGRAD_DGELU_EPILOGUE=1 build/tests/test_linear "[cuda]" > $L/t-linear-1.log 2>&1
el "test_linear cuda (DGELU epilogue) rc $? $(tail -2 $L/t-linear-1.log | head -1)"
memcheck 70 test_linear test_nn_ops test_nn
pack
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
FLASHGRAD_DGELU_EPILOGUE=1 timeout 60 build/flashgrad bench ops 2>&1 | tail -2 | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench train --preset gpt12 --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train gpt12 rc $?"
pack
timeout 200 build/flashgrad train --preset small --device cuda --dtype bf16 --out /tmp/small \
  --eval-interval 250 --log-interval 500 --sample-tokens 0 > $L/train-small-run.log 2>&1
el "train small rc $?"; grep -E "best val|done:|step +(250|3750|5000) " $L/train-small-run.log | tail -5 | tee -a $FINAL/summary.txt
cp $L/train-small-run.log $FINAL/
pack
el done
