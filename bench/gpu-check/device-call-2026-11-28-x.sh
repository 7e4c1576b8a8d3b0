#!/bin/bash
# Device call (session 6, call 5, on 4 GPUs): data parallel against one GPU and against
# PyTorch DDP. Equivalence over 200 bf16 steps: one GPU at batch 32 against one GPU at 2 x 16
# (gradient accumulation: the same sum in another order, the yardstick of bf16 noise), two GPUs
# at 16 and four at 8. Scaling at the gpt12 config (16 sequences per GPU) on 1, 2 and 4 GPUs:
# flashgrad train --gpus N, tokens/s over steps 11-60; PyTorch (torch.compile) alone and under
# DDP with torchrun on 2 and 4 GPUs, 20 steps after 5.
#   bash bench/gpu-check/device-call-2026-11-28-x.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
nvidia-smi -L | tee -a $FINAL/summary.txt
build flashgrad_cli
F=build/flashgrad
EQ="--device cuda --dtype bf16 --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --dropout 0 --steps 200 --warmup 10 --eval-interval 1000 --log-interval 1 --sample-tokens 0"
timeout 100 $F train $EQ --batch-size 32 --out /tmp/e1 > $L/eq-1x32.log 2>&1; el "eq 1x32 rc $?"
timeout 100 $F train $EQ --batch-size 16 --grad-accum 2 --out /tmp/e2 > $L/eq-1x16x2.log 2>&1; el "eq 1x16 accum 2 rc $?"
timeout 100 $F train $EQ --batch-size 16 --gpus 2 --out /tmp/e3 > $L/eq-2x16.log 2>&1; el "eq 2x16 rc $?"
timeout 100 $F train $EQ --batch-size 8 --gpus 4 --out /tmp/e4 > $L/eq-4x8.log 2>&1; el "eq 4x8 rc $?"
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import re, sys, statistics
L = sys.argv[1]
def losses(n):
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"step +(\d+)/\d+ \| loss ([0-9.]+)", open(f"{L}/{n}").read())}
ref = losses("eq-1x32.log")
for n in ("eq-1x16x2.log", "eq-2x16.log", "eq-4x8.log"):
    o = losses(n); s = sorted(set(ref) & set(o)); d = [abs(ref[k] - o[k]) for k in s]
    late = [abs(ref[k] - o[k]) for k in s if k > 100]
    print(f"  {n} vs eq-1x32.log: {len(s)} steps; max |dloss| {max(d):.4f}, mean {statistics.mean(d):.4f}; "
          f"steps 101-200: max {max(late):.4f}, mean {statistics.mean(late):.4f}; final {ref[200]:.4f} vs {o[200]:.4f}")
PY
pack
GPT12="--device cuda --dtype bf16 --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --batch-size 16 --dropout 0.1 --steps 60 --warmup 5 --eval-interval 1000 --log-interval 10 --sample-tokens 0"
for n in 1 2 4; do
  timeout 150 $F train $GPT12 --gpus $n --out /tmp/g$n > $L/scale-$n.log 2>&1; el "flashgrad gpt12 --gpus $n rc $?"
  python3 - $L/scale-$n.log <<'PY' | tee -a $FINAL/summary.txt
import re, sys
def num(x):
    return float(x[:-1]) * {"k": 1e3, "M": 1e6}[x[-1]] if x[-1] in "kM" else float(x)
rows = {int(m.group(1)): num(m.group(2)) for m in re.finditer(r"step +(\d+)/\d+ \|.*\| ([0-9.]+[kM]?) tok/s", open(sys.argv[1]).read())}
a, b = 10, max(rows)
rate = (b - a) / (b / rows[b] - a / rows[a])  # tokens/s over steps a+1..b (the printed figures are running means)
print(f"  {sys.argv[1].split('/')[-1]}: {rate/1e3:.1f}k tok/s over steps {a+1}-{b} (running mean at {b}: {rows[b]/1e3:.1f}k)")
PY
done
pack
timeout 120 python3 bench/compare_train.py --preset gpt12 --device cuda --dtype bf16 --modes compile --no-flashgrad --steps 20 --warmup 5 --out-json $L/ddp-1.json > $L/ddp-1.log 2>&1
el "pytorch compile 1 GPU rc $?"; grep -v -i warn $L/ddp-1.log | tail -2 | tee -a $FINAL/summary.txt
for n in 2 4; do
  timeout 150 torchrun --standalone --nproc-per-node $n bench/compare_train.py --preset gpt12 --device cuda --dtype bf16 --modes compile --no-flashgrad --steps 20 --warmup 5 --out-json $L/ddp-$n.json > $L/ddp-$n.log 2>&1
  el "pytorch DDP compile $n GPUs rc $?"; grep -E "pytorch|DDP" $L/ddp-$n.log | grep -v -i warn | tail -2 | tee -a $FINAL/summary.txt
  pack
done
el done
