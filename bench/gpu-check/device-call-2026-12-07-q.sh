#!/bin/bash
# Call q (2026-12-07, third session): the TMA forward made persistent (one block per SM walking
# the work items) and its ping-pong form, against the one-block-per-item launch of call p, in
# one call: the tests of every form, `bench attention` of each (FLASHGRAD_TMA_VARIANT = "" the
# persistent default, np, pp, nppp), SDPA beside the default, compute-sanitizer on the default,
# then the issue's three training configs beside PyTorch; from the SDPA comparison on, every
# step runs the form that had the best D 64 causal forward. Ask for nvidia-h100-x1.
#   LIMIT=570 bash bench/gpu-check/device-call-2026-12-07-q.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-570}
build
for v in "" np pp; do
  FLASHGRAD_TMA_VARIANT=$v timeout 60 build/tests/test_attention_kernels \
    "attention cuda: every kernel of the tables against the reference" > $L/tk-$v.log 2>&1
  el "sweep variant '$v' rc $? $(tail -3 $L/tk-$v.log | grep -E 'passed|failed')"
done
# If the persistent form failed its sweep, the rest runs on call p's launch (np) alone.
if ! grep -q "All tests passed" $L/tk-.log; then
  el "persistent form failed: the rest with FLASHGRAD_TMA_VARIANT=np"; export FLASHGRAD_TMA_VARIANT=np
fi
timeout 100 build/tests/test_attention_tc "[cuda]" > $L/ttc.log 2>&1
el "test_attention_tc rc $? $(tail -3 $L/ttc.log | grep -E 'passed|failed')"
pack
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5"
if [ -z "${FLASHGRAD_TMA_VARIANT:-}" ]; then
for v in "" np pp; do
  FLASHGRAD_TMA_VARIANT=$v timeout 60 build/flashgrad $B --seconds 0.1 --no-check --json $L/v-$v.json > $L/v-$v.log 2>&1
  el "bench attention variant '$v' rc $?"
done
python3 - $L > $L/variants.txt <<'PY'
import json, sys
L = sys.argv[1]
names = ["", "np", "pp"]
runs = {v: json.load(open(f"{L}/v-{v}.json"))["results"] for v in names}
print("D causal N | forward TFLOP/s: " + " | ".join(v or "persistent" for v in names))
for i, r in enumerate(runs[""]):
    print(f"{r['D']} {r['causal']} {r['N']} | " + " | ".join(f"{runs[v][i]['fwd_tflops']:.1f}" for v in names))
score = {v: sum(r["fwd_tflops"] for r in runs[v] if r["D"] == 64 and r["causal"]) for v in names}
print("best at D 64 causal:", max(score, key=score.get) or "persistent")
with open(f"{L}/best", "w") as f: f.write(max(score, key=score.get))
PY
cat $L/variants.txt | tee -a $FINAL/summary.txt
else echo -n "$FLASHGRAD_TMA_VARIANT" > $L/best; fi
export FLASHGRAD_TMA_VARIANT=$(cat $L/best); el "from here on FLASHGRAD_TMA_VARIANT='$FLASHGRAD_TMA_VARIANT'"
pack
ctest_cuda 120
for tool in memcheck racecheck synccheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_attention_kernels \
    "attention cuda race check: bf16" > $L/$tool-race-bf16.log 2>&1
  el "$tool race bf16 rc $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/$tool-race-bf16.log | tail -1)"
done
pack
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
if [ $(left) -gt 70 ]; then
timeout 90 build/flashgrad $B --seconds 0.2 --json $L/tma.json > $L/tma.log 2>&1; el "bench attention default rc $?"
timeout 120 python3 bench/compare_sdpa.py --flashgrad-json $L/tma.json --seconds 0.2 --reps 5 \
  --out-json $L/sdpa.json --out-md $L/sdpa.md > $L/sdpa.log 2>&1
el "compare_sdpa rc $?"; cp $L/sdpa.md $FINAL/sdpa.md 2>/dev/null
fi
pack
for c in "gpt12 --preset gpt12 --steps 20 --warmup 5" "small --preset small --steps 20 --warmup 5" \
         "gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3"; do
  if [ $(left) -gt 100 ]; then run_compare $c; else el "no time for ${c%% *} ($(left) s left)"; fi
done
pack
el done
