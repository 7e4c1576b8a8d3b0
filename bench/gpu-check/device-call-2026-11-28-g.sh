#!/bin/bash
# Device call (session 4, call 1): the training-step baseline before the issue-14 kernels.
# Builds the CLI and the elementwise/nn tests, runs their [cuda] cases (the GELU formula change
# had not run on a GPU), then bench/compare_train.py (flashgrad `train` beside PyTorch eager and
# torch.compile, bf16) on the small, gpt12 and gpt24 presets.
#   bash bench/gpu-check/device-call-2026-11-28-g.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
build flashgrad_cli test_elementwise test_nn test_nn_ops
build/tests/test_elementwise "[cuda]" > $L/t1.log 2>&1; el "test_elementwise cuda rc $? $(tail -2 $L/t1.log | head -1)"
build/tests/test_nn "[cuda]" > $L/t2.log 2>&1; el "test_nn cuda rc $? $(tail -2 $L/t2.log | head -1)"
build/tests/test_nn_ops "[cuda]" > $L/t3.log 2>&1; el "test_nn_ops cuda rc $? $(tail -2 $L/t3.log | head -1)"
for p in small gpt12 gpt24; do
  timeout 200 python3 bench/compare_train.py --preset $p --device cuda --dtype bf16 --modes eager,compile \
    --steps 30 --warmup 10 --flashgrad build/flashgrad --out-json $L/train-$p.json > $L/train-$p.log 2>&1
  el "compare_train $p rc $?"; cat $L/train-$p.log | grep -v Warning | tail -5 | tee -a $FINAL/summary.txt
done
tar czf $FINAL/logs.tgz -C $FINAL l && rm -rf $L
el done
