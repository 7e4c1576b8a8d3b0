#!/bin/bash
# Device call (session 5, call 1): where the gpt12 training step's time goes, kernel by kernel
# (Nsight Compute, one warm-up and one timed step; kernel durations summed by name), before the
# fusion work of issue 14 item 2. Also the bench train baseline for gpt12.
#   bash bench/gpu-check/device-call-2026-11-28-l.sh     (repository root, .deps carried)
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p $L
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 16 --target flashgrad_cli >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -10 | tee -a $FINAL/summary.txt
timeout 90 build/flashgrad bench train --preset gpt12 --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train gpt12 rc $?"
which nsys ncu | tee -a $FINAL/summary.txt
timeout 330 ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
  build/flashgrad bench train --preset gpt12 --steps 1 --warmup 1 > $FINAL/ncu-gpt12.csv 2> $L/ncu.err
el "ncu rc $? $(wc -l < $FINAL/ncu-gpt12.csv) lines"
tail -5 $L/ncu.err | tee -a $FINAL/summary.txt
tar czf $FINAL/logs.tgz -C $FINAL l && rm -rf $L
el done
