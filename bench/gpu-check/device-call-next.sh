#!/bin/bash
# Device call for the next session: what landed after the last GPU run of 2026-12-07 (call n
# tested the LayerNorm kernels of 4cdae9e; 0ce7e78 sets the backward's shared-memory opt-in on
# every launch, host side), then the table of all three configs from one H100 call
# (call n's one-call table came from an H200). Ask for nvidia-h100-x1.
#   LIMIT=560 bash bench/gpu-check/device-call-next.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-560}
build
ctest_cuda 120
memcheck 60 test_nn_ops
timeout 60 build/flashgrad bench ops --reps 5 > $L/ops.log 2>&1
el "bench ops rc $?"; grep -E "^ +[a-z]" $L/ops.log | tee -a $FINAL/summary.txt
pack
compare_all_configs
pack
el done
