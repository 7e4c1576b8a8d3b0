#!/bin/bash
# Device call (session 5, call 7): gpt24 at batch 64, about the largest batch at which the
# PyTorch side fits an 80 GB H100 (0.9 GiB a sequence from calls at batch 8 and 32: ~63 GiB),
# beside PyTorch 2.11 eager and torch.compile, with the default settings of commit 25305c6.
#   bash bench/gpu-check/device-call-2026-11-28-r.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build flashgrad_cli
timeout 400 python3 bench/compare_train.py --preset gpt24 --batch 64 --device cuda --dtype bf16 \
  --modes eager,compile --steps 6 --warmup 3 --flashgrad build/flashgrad \
  --out-json $FINAL/train-gpt24-b64.json > $L/train-gpt24-b64.log 2>&1
el "compare_train gpt24-b64 rc $?"; grep -v -i warn $L/train-gpt24-b64.log | tail -7 | tee -a $FINAL/summary.txt
pack
el done
