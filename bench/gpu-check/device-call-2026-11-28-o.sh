#!/bin/bash
# Device call (session 5, call 4): adds the one-pass LayerNorm backward (gx and the gw/gb
# partial sums together) and the MLP as one node with the GELU's derivative and c_fc's bias
# gradient in cuBLASLt's DGELU_BGRAD epilogue. Builds everything; the `cuda` tests; memcheck
# on the changed kernels' tests; bench ops; bench train on the three configs; the small
# preset's full training run for the val-loss check.
#   bash bench/gpu-check/device-call-2026-11-28-o.sh     (repository root; carry .deps and data)
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p $L
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a $FINAL/summary.txt; }
pack() { tar czf $FINAL/logs.tgz -C $FINAL l; }
C="-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $FINAL/summary.txt
cmake -B build $C > $L/build.log 2>&1 && cmake --build build -j 16 >> $L/build.log 2>&1; el "build rc $?"
grep -E "error|FAILED" $L/build.log | head -10 | tee -a $FINAL/summary.txt
timeout 200 ctest --test-dir build -L cuda -j 4 --output-on-failure > $L/ctest.log 2>&1
el "ctest -L cuda rc $? $(grep -E 'tests passed|tests failed' $L/ctest.log)"
grep -E "Failed|\*\*\*" $L/ctest.log | head -20 | tee -a $FINAL/summary.txt
pack
for t in test_linear test_nn_ops test_nn; do
  timeout 70 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$t "[cuda]" > $L/mc-$t.log 2>&1
  el "memcheck $t rc $? $(grep -E 'ERROR SUMMARY' $L/mc-$t.log | tail -1)"
done
pack
timeout 60 build/flashgrad bench ops 2>&1 | tee -a $FINAL/summary.txt; el "bench ops rc $?"
for p in gpt12 small gpt24; do
  timeout 60 build/flashgrad bench train --preset $p --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt; el "bench train $p rc $?"
done
pack
timeout 200 build/flashgrad train --preset small --device cuda --dtype bf16 --out /tmp/small \
  --eval-interval 250 --log-interval 500 --sample-tokens 0 > $L/train-small-run.log 2>&1
el "train small rc $?"; grep -E "best val|done:|step +(250|3750|5000) " $L/train-small-run.log | tail -5 | tee -a $FINAL/summary.txt
pack
el done
