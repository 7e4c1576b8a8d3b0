#!/bin/bash
# Device call (session 6, call 7, on 2 GPUs): a hung worker and the split evaluation. One
# worker is frozen with SIGSTOP 20 s into a run with FLASHGRAD_NCCL_TIMEOUT=15: the other
# rank's watchdog must give up about 15 s later (exit 124, naming itself), and the launcher
# must stop the frozen one and exit non-zero, leaving no process. Then fp32 eval losses of 2
# GPUs (each evaluating half the batches) against one GPU at the combined batch.
# (The watchdog did not fire: the call ran into its 200 s limit with the frozen worker's peer
# still waiting, and the watchdog was then taken out again; see bench/RESULTS.md.)
#   bash bench/gpu-check/device-call-2026-11-28-z.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build flashgrad_cli
F=build/flashgrad
LONG="--device cuda --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --batch-size 16 --steps 100000 --eval-interval 1000 --log-interval 500 --sample-tokens 0"
FLASHGRAD_NCCL_TIMEOUT=15 $F train $LONG --gpus 2 --out /tmp/hang > $L/hang.log 2>&1 & LP=$!
sleep 20; W1=$(pgrep -P $LP | sed -n 2p); kill -STOP $W1; T=$(date +%s); el "froze worker pid $W1"
wait $LP; rc=$?
el "launcher rc $rc, $(( $(date +%s) - T )) s after the freeze; flashgrad processes left: $(pgrep -f 'flashgrad train' | wc -l)"
grep -E "^error" $L/hang.log | tee -a $FINAL/summary.txt
EV="--device cuda --dtype fp32 --n-layer 4 --n-head 4 --n-embd 256 --block-size 128 --dropout 0 --steps 20 --warmup 5 --eval-interval 10 --eval-batches 8 --log-interval 10 --sample-tokens 0"
timeout 60 $F train $EV --batch-size 32 --out /tmp/ev1 > $L/eval-1.log 2>&1; el "eval one GPU rc $?"
timeout 60 $F train $EV --batch-size 16 --gpus 2 --out /tmp/ev2 > $L/eval-2.log 2>&1; el "eval two GPUs rc $?"
grep -h "eval step" $L/eval-1.log $L/eval-2.log | tee -a $FINAL/summary.txt
pack
el done
