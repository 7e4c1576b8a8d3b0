#!/bin/bash
# Device call (session 5, call 1): where the gpt12 training step's time goes, kernel by kernel
# (Nsight Compute, one warm-up and one timed step; kernel durations summed by name), before the
# fusion work of issue 14 item 2. Also the bench train baseline for gpt12.
#   bash bench/gpu-check/device-call-2026-11-28-l.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
build flashgrad_cli
timeout 90 build/flashgrad bench train --preset gpt12 --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train gpt12 rc $?"
which nsys ncu | tee -a $FINAL/summary.txt
timeout 330 ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
  build/flashgrad bench train --preset gpt12 --steps 1 --warmup 1 > $FINAL/ncu-gpt12.csv 2> $L/ncu.err
el "ncu rc $? $(wc -l < $FINAL/ncu-gpt12.csv) lines"
tail -5 $L/ncu.err | tee -a $FINAL/summary.txt
tar czf $FINAL/logs.tgz -C $FINAL l && rm -rf $L
el done
