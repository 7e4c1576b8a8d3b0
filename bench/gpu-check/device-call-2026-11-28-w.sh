#!/bin/bash
# Device call (session 6, call 4, on 2 GPUs): data-parallel training, first run. Builds the CLI
# and the data-parallel tests (NCCL from the system); the tests; two GPUs against one GPU with
# twice the batch, step for step (fp32 and bf16, dropout 0); tokens/s at the gpt12 config on
# one and two GPUs (batch 16 per GPU); a worker killed mid-run (the launcher must stop the
# other and exit non-zero, no process left); Ctrl-C to the whole group (every rank stops after
# the same step, exit 130, the checkpoint intact).
#   bash bench/gpu-check/device-call-2026-11-28-w.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
nvidia-smi -L | tee -a $FINAL/summary.txt
build flashgrad_cli test_data_parallel
grep -i nccl $L/build.log | head -3 | tee -a $FINAL/summary.txt
build/tests/test_data_parallel > $L/t-dp.log 2>&1; el "test_data_parallel rc $? $(tail -2 $L/t-dp.log | head -1)"
F=build/flashgrad
SMALL="--device cuda --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --dropout 0 --steps 60 --warmup 10 --eval-interval 1000 --log-interval 1 --sample-tokens 0"
for dt in fp32 bf16; do
  timeout 120 $F train $SMALL --dtype $dt --batch-size 32 --out /tmp/one-$dt > $L/eq-one-$dt.log 2>&1; a=$?
  timeout 120 $F train $SMALL --dtype $dt --batch-size 16 --gpus 2 --out /tmp/two-$dt > $L/eq-two-$dt.log 2>&1; b=$?
  el "equivalence $dt: one GPU rc $a, two GPUs rc $b"
  tail -3 $L/eq-two-$dt.log | tee -a $FINAL/summary.txt
  python3 - $L/eq-one-$dt.log $L/eq-two-$dt.log <<'PY' | tee -a $FINAL/summary.txt
import re, sys
def losses(p):
    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"step +(\d+)/\d+ \| loss ([0-9.]+)", open(p).read())}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
steps = sorted(set(a) & set(b))
d = [abs(a[s] - b[s]) for s in steps]
print(f"  {len(steps)} steps compared; max |loss diff| {max(d) if d else float('nan'):.4f}; "
      f"first {a.get(1)} vs {b.get(1)}; last {a.get(60)} vs {b.get(60)}; diffs at 10,30,60: "
      + ", ".join(f"{abs(a.get(s,0)-b.get(s,0)):.4f}" for s in (10, 30, 60)))
PY
done
pack
GPT12="--device cuda --dtype bf16 --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --batch-size 16 --dropout 0.1 --steps 40 --warmup 5 --eval-interval 1000 --log-interval 10 --sample-tokens 0"
timeout 150 $F train $GPT12 --out /tmp/g1 > $L/scale-1.log 2>&1; el "gpt12 one GPU rc $?"; grep -E "^done|peak" $L/scale-1.log | tee -a $FINAL/summary.txt
timeout 150 $F train $GPT12 --gpus 2 --out /tmp/g2 > $L/scale-2.log 2>&1; el "gpt12 two GPUs rc $?"; grep -E "^done|peak|data parallel" $L/scale-2.log | tee -a $FINAL/summary.txt
pack
# A worker killed with SIGKILL after 25 s of a long run.
LONG="--device cuda --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --batch-size 16 --steps 100000 --eval-interval 50 --log-interval 100 --sample-tokens 0"
$F train $LONG --gpus 2 --out /tmp/kill > $L/kill.log 2>&1 & LP=$!
sleep 25; W1=$(pgrep -P $LP | sed -n 2p); el "killing worker pid $W1 (launcher $LP)"; kill -9 $W1
T=$(date +%s); wait $LP; rc=$?; el "launcher rc $rc, $(( $(date +%s) - T )) s after the kill; flashgrad processes left: $(pgrep -f 'flashgrad train' | wc -l)"
tail -3 $L/kill.log | tee -a $FINAL/summary.txt
# Ctrl-C to the whole process group after 25 s.
setsid $F train $LONG --gpus 2 --out /tmp/int > $L/int.log 2>&1 & SP=$!
sleep 25; kill -INT -- -$SP; T=$(date +%s); wait $SP; rc=$?
el "Ctrl-C: rc $rc, $(( $(date +%s) - T )) s; processes left: $(pgrep -f 'flashgrad train' | wc -l); checkpoint: $(ls /tmp/int | tr '\n' ' ')"
tail -3 $L/int.log | tee -a $FINAL/summary.txt
pack
el done
