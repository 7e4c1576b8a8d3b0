#!/bin/bash
# Device call (session 6, call 2): call t found bench attention --dropout 0.1 failing its dQ
# check at row 0 of a causal head, where the fp64 reference's exact D_i makes dQ_0 = 0 while
# every 16-bit kernel forms D_i from its rounded output; the check now hands the reference the
# kernel's output (attention_reference_backward's o_stored). Builds everything; the `cuda`
# tests; bench attention with and without dropout (D 64 and 128, causal both, N 1024 and
# 2048); compare_train beside PyTorch at small and gpt24; the small preset's full training run
# (best val loss; attention dropout is now 51/256 = 0.1992 for p = 0.2).
#   bash bench/gpu-check/device-call-2026-11-28-u.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build
ctest_cuda 200
for pd in 0 0.1; do
  timeout 90 build/flashgrad bench attention --head-dim 64,128 --causal both --min-len 1024 \
    --max-len 2048 --tokens 16384 --hidden 768 --seconds 1 --dropout $pd \
    --json $L/attn-dropout-$pd.json 2>&1 | tee -a $FINAL/summary.txt
  el "bench attention dropout $pd rc $?"
done
pack
run_compare small --preset small --steps 20 --warmup 5
run_compare gpt24 --preset gpt24 --steps 20 --warmup 5
timeout 200 build/flashgrad train --preset small --device cuda --dtype bf16 --out /tmp/small \
  --eval-interval 250 --log-interval 500 --sample-tokens 0 > $L/train-small-run.log 2>&1
el "train small rc $?"; grep -E "best val|done:|step +(250|3750|5000) " $L/train-small-run.log | tail -5 | tee -a $FINAL/summary.txt
pack
el done
