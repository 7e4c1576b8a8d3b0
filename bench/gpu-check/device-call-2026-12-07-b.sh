#!/bin/bash
# Device call (2026-12-07, call b, on 2 or 4 GPUs): --zero 1 and --reduce-dtype on GPUs.
# Equivalence over 200 bf16 steps on 2 GPUs: --zero 1 and --reduce-dtype fp32 against the
# plain run (same batches; the sums differ only in order and rounding); a --zero 1 checkpoint
# resumed on one GPU; the gpt12 config on every GPU with --zero 0 and --zero 1 (tokens/s and
# the optimizer state on the fullest GPU).
#   bash bench/gpu-check/device-call-2026-12-07-b.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
nvidia-smi -L | tee -a $FINAL/summary.txt
N=$(nvidia-smi -L | wc -l)
build flashgrad_cli
F=build/flashgrad
EQ="--device cuda --dtype bf16 --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --dropout 0 --steps 200 --warmup 10 --eval-interval 1000 --log-interval 1 --sample-tokens 0 --batch-size 16 --gpus 2"
timeout 100 $F train $EQ --out /tmp/e0 > $L/eq-plain.log 2>&1; el "eq plain rc $?"
timeout 100 $F train $EQ --zero 1 --out /tmp/e1 > $L/eq-zero1.log 2>&1; el "eq zero1 rc $?"
timeout 100 $F train $EQ --reduce-dtype fp32 --out /tmp/e2 > $L/eq-fp32.log 2>&1; el "eq reduce fp32 rc $?"
timeout 100 $F train $EQ --zero 1 --bucket-mb 0 --out /tmp/e3 > $L/eq-zero1-nobucket.log 2>&1; el "eq zero1 bucket 0 rc $?"
grep -E "optimizer state|data parallel:" $L/eq-zero1.log | tee -a $FINAL/summary.txt
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import re, sys, statistics
L = sys.argv[1]
def losses(n):
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"step +(\d+)/\d+ \| loss ([0-9.]+)", open(f"{L}/{n}").read())}
ref = losses("eq-plain.log")
for n in ("eq-zero1.log", "eq-fp32.log", "eq-zero1-nobucket.log"):
    o = losses(n); s = sorted(set(ref) & set(o))
    if not s: print(f"  {n}: no steps"); continue
    d = [abs(ref[k] - o[k]) for k in s]
    print(f"  {n} vs eq-plain.log: {len(s)} steps; max |dloss| {max(d):.4f}, mean {statistics.mean(d):.4f}; "
          f"first 5 identical: {all(ref[k] == o[k] for k in s[:5])}; final {ref[s[-1]]:.4f} vs {o[s[-1]]:.4f}")
PY
pack
# A --zero 1 checkpoint (saved at steps 10 and 20) resumed on one GPU without ZeRO.
R="--device cuda --dtype bf16 --n-layer 2 --n-head 4 --n-embd 128 --block-size 64 --batch-size 8 --eval-interval 10 --sample-tokens 0"
timeout 60 $F train $R --steps 20 --gpus 2 --zero 1 --out /tmp/r1 > $L/resume-a.log 2>&1; el "zero1 2 GPUs 20 steps rc $?"
timeout 60 $F train $R --steps 30 --resume --out /tmp/r1 > $L/resume-b.log 2>&1; el "resume on 1 GPU to 30 rc $? $(grep -E '^done' $L/resume-b.log)"
timeout 60 $F train $R --steps 30 --gpus 2 --out /tmp/r2 > $L/resume-c.log 2>&1; el "plain 2 GPUs 30 steps rc $? $(grep -E '^done' $L/resume-c.log)"
pack
GPT12="--device cuda --dtype bf16 --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --batch-size 16 --dropout 0.1 --steps 40 --warmup 5 --eval-interval 1000 --log-interval 10 --sample-tokens 0"
for z in 0 1; do
  timeout 120 $F train $GPT12 --gpus $N --zero $z --out /tmp/g$z > $L/gpt12-zero$z.log 2>&1
  el "gpt12 --gpus $N --zero $z rc $? $(grep -E '^done' $L/gpt12-zero$z.log)"
  grep -E "optimizer state|peak memory" $L/gpt12-zero$z.log | tee -a $FINAL/summary.txt
done
pack
el done
