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
run_compare small --preset small --steps 20 --warmup 5
run_compare gpt12 --preset gpt12 --steps 20 --warmup 5
left=$(( LIMIT - 10 - ($(date +%s) - T0) ))
if [ $left -gt 120 ]; then run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3; else el "no time for gpt24 ($left s left)"; fi
pack
el done
