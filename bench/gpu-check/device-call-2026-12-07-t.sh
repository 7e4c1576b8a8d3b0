#!/bin/bash
# Device call t of 2026-12-07 (seventh session; run after r and s): head dims 96 and 256 on the
# mma.sync kernels (forward at 96 and 256, backward at 96; rows padded to 128 in shared memory
# at 96), which no GPU has run yet. (1) test_attention_kernels' sweep of every usable kernel
# against the fp64 reference at D 32-256, and the 96/256 race case: plain, then under
# memcheck, racecheck and synccheck side by side; (2) `flashgrad gradcheck attention --device
# cuda` (its rows at 96 and 256 now take the new kernels); (3) `bench attention` at D 96 and 256
# beside SDPA (flash and cuDNN), and the SIMT kernels of before on the same grid
# (FLASHGRAD_ATTENTION_SIMT=1), so the speedup is measured in one call.
#   LIMIT=420 bash bench/gpu-check/device-call-2026-12-07-t.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-420}
build
DIMS="attention cuda race check: head dims 96 and 256"
timeout 90 build/tests/test_attention_kernels "attention cuda: every kernel of the tables against the reference" \
  > $L/sweep.log 2>&1
el "sweep rc $? $(tail -3 $L/sweep.log | grep -E 'passed|failed')"
grep -E "FAILED|REQUIRE|CHECK\(|with expansion" $L/sweep.log | head -10 | tee -a $FINAL/summary.txt
timeout 60 build/tests/test_attention_kernels "$DIMS" > $L/dims.log 2>&1
el "race case D 96/256 rc $? $(tail -3 $L/dims.log | grep -E 'passed|failed') | kernels: $(grep -oE 'cuda-(forward|backward):[a-z0-9]+' $L/dims.log | sort -u | tr '\n' ' ')"
pack
for tool in memcheck racecheck synccheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_attention_kernels \
    "$DIMS" > $L/$tool-dims.log 2>&1 &
done
wait
for tool in memcheck racecheck synccheck; do
  el "$tool D 96/256: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/$tool-dims.log | tail -1) | $(tail -2 $L/$tool-dims.log | grep -E 'passed|failed')"
done
pack
timeout 90 build/flashgrad gradcheck attention --device cuda > $L/gradcheck.log 2>&1
el "gradcheck attention cuda rc $? $(grep -ciE 'fail' $L/gradcheck.log) lines with 'fail'"
grep -E "^ *(96|256) |D=(96|256)| 96 | 256 " $L/gradcheck.log | head -16 | tee -a $FINAL/summary.txt
pack
B="bench attention --dtype bf16 --head-dim 96,256 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2"
timeout 70 build/flashgrad $B --json $L/dims.json > $L/bench-dims.log 2>&1
el "bench attention D 96/256 rc $?"
grep -E "^ +(96|256) " $L/bench-dims.log | tee -a $FINAL/summary.txt
FLASHGRAD_ATTENTION_SIMT=1 timeout 90 build/flashgrad $B --no-check --json $L/dims-simt.json > $L/bench-dims-simt.log 2>&1
el "bench attention D 96/256, SIMT, rc $?"
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]
a = json.load(open(f"{L}/dims.json"))["results"]; s = json.load(open(f"{L}/dims-simt.json"))["results"]
print("D causal N | fwd TFLOP/s: mma | simt | ratio || bwd TFLOP/s: default | simt | ratio")
for x, y in zip(a, s):
    print(f"{x['D']} {x['causal']} {x['N']} | {x['fwd_tflops']:.1f} | {y['fwd_tflops']:.1f} | {x['fwd_tflops'] / y['fwd_tflops']:.2f}"
          f" || {x['bwd_tflops']:.1f} | {y['bwd_tflops']:.1f} | {x['bwd_tflops'] / y['bwd_tflops']:.2f}")
PY
pack
timeout 110 python3 bench/compare_sdpa.py --flashgrad-json $L/dims.json --seconds 0.2 --reps 5 \
  --out-json $L/dims-sdpa.json --out-md $L/dims-sdpa.md > $L/dims-sdpa.log 2>&1; el "compare_sdpa rc $?"
grep -E "flash \|" $L/dims-sdpa.md | head -20 | tee -a $FINAL/summary.txt
pack
el done
