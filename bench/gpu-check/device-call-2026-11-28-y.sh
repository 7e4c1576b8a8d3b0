#!/bin/bash
# Device call (session 6, call 6, on 4 GPUs): gradient buckets averaged on NCCL's own stream
# while the backward runs (--bucket-mb, default 25). Overlap must not change the arithmetic:
# two GPUs with --bucket-mb 0 (one averaging after the backward), 25 and 1 (many buckets)
# against each other and against a second run with 0 (the run-to-run spread: dQ is summed with
# atomics in the attention backward, so runs need not agree to the last bit). Then tokens/s at the gpt12 config
# (16 sequences per GPU) on 2 and 4 GPUs with and without overlap, over steps 11-60.
#   bash bench/gpu-check/device-call-2026-11-28-y.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
nvidia-smi -L | tee -a $FINAL/summary.txt
build flashgrad_cli
F=build/flashgrad
EQ="--device cuda --dtype bf16 --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --dropout 0.1 --batch-size 16 --steps 60 --warmup 10 --eval-interval 1000 --log-interval 1 --sample-tokens 0 --gpus 2"
for mb in 0 0-again 25 1; do
  timeout 100 $F train $EQ --bucket-mb ${mb%-again} --out /tmp/b$mb > $L/bucket-$mb.log 2>&1; el "2 GPUs --bucket-mb $mb rc $?"
done
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import re, sys
L = sys.argv[1]
def losses(n):
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"step +(\d+)/\d+ \| loss ([0-9.]+)", open(f"{L}/bucket-{n}.log").read())}
ref = losses("0")
for n in ("0-again", "25", "1"):
    o = losses(n); s = sorted(set(ref) & set(o))
    same = sum(ref[k] == o[k] for k in s)
    d = max(abs(float(ref[k]) - float(o[k])) for k in s)
    first = next((k for k in s if ref[k] != o[k]), None)
    print(f"  --bucket-mb {n} vs 0: {same} of {len(s)} steps print the same loss; max |dloss| {d:.4f}; first differing step {first}")
PY
pack
GPT12="--device cuda --dtype bf16 --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --batch-size 16 --dropout 0.1 --steps 60 --warmup 5 --eval-interval 1000 --log-interval 10 --sample-tokens 0"
rate() {
  python3 - $1 <<'PY' | tee -a $FINAL/summary.txt
import re, sys
def num(x):
    return float(x[:-1]) * {"k": 1e3, "M": 1e6}[x[-1]] if x[-1] in "kM" else float(x)
rows = {int(m.group(1)): num(m.group(2)) for m in re.finditer(r"step +(\d+)/\d+ \|.*\| ([0-9.]+[kM]?) tok/s", open(sys.argv[1]).read())}
a, b = 10, max(rows)
rate = (b - a) / (b / rows[b] - a / rows[a])
print(f"  {sys.argv[1].split('/')[-1]}: {rate/1e3:.1f}k tok/s over steps {a+1}-{b}")
PY
}
timeout 150 $F train $GPT12 --gpus 1 --out /tmp/s1 > $L/scale-1.log 2>&1; el "gpt12 1 GPU rc $?"; rate $L/scale-1.log
for n in 2 4; do
  for mb in 0 25; do
    timeout 150 $F train $GPT12 --gpus $n --bucket-mb $mb --out /tmp/s$n-$mb > $L/scale-$n-$mb.log 2>&1
    el "gpt12 $n GPUs --bucket-mb $mb rc $?"; rate $L/scale-$n-$mb.log
  done
  pack
done
el done
