#!/bin/bash
# Device call r of 2026-12-07 (fourth session): (1) the TMA forward under compute-sanitizer at
# last (the race case's maskless pass; memcheck, synccheck and racecheck side by side), with
# the new backward pre- and post-passes (16-byte vectors, the dQ accumulator zeroed in the D_i
# pass) and their element-form fallback test, and the wgmma backward's dQ by bulk reductions
# (FLASHGRAD_BWD_DQ=bulk) against the atomics of before (the default) and the bulk form with
# the dQ product overlapping the next tile's elementwise steps (=overlap): sweep under each,
# the race case under each (the sanitizers on the bulk form), backward TFLOP/s of each; (2) `bench attention` beside SDPA; (3) Nsight
# Compute: the time of each kernel of the backward sequence at gpt12's shape (D 64, causal,
# N 1024) and at D 128, N 8192, and the full section set of the dK/dV kernel at D 64.
#   LIMIT=580 bash bench/gpu-check/device-call-2026-12-07-r.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-580}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build
RACE="attention cuda race check: bf16"
NEW="attention cuda backward: O rows off 16-byte boundaries"
timeout 120 build/tests/test_attention_kernels "[cuda]" > $L/tk.log 2>&1
el "test_attention_kernels [cuda] rc $? $(tail -3 $L/tk.log | grep -E 'passed|failed')"
grep -E "FAILED|failed|REQUIRE|CHECK\(" $L/tk.log | head -10 | tee -a $FINAL/summary.txt
for m in bulk overlap; do
  FLASHGRAD_BWD_DQ=$m timeout 60 build/tests/test_attention_kernels \
    "attention cuda: every kernel of the tables against the reference" > $L/tk-$m.log 2>&1
  el "sweep with FLASHGRAD_BWD_DQ=$m rc $? $(tail -3 $L/tk-$m.log | grep -E 'passed|failed')"
done
FLASHGRAD_BWD_DQ=overlap timeout 60 build/tests/test_attention_kernels "$RACE" > $L/race-overlap.log 2>&1
el "race case with FLASHGRAD_BWD_DQ=overlap rc $? $(tail -3 $L/race-overlap.log | grep -E 'passed|failed')"
pack
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2"
timeout 70 build/flashgrad $B --json $L/bench.json > $L/bench.log 2>&1
el "bench attention rc $?"
for m in bulk overlap; do
  FLASHGRAD_BWD_DQ=$m timeout 70 build/flashgrad $B --no-check --json $L/bench-$m.json > $L/bench-$m.log 2>&1
  el "bench attention, FLASHGRAD_BWD_DQ=$m, rc $?"
done
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]
r = {m: json.load(open(f"{L}/bench{s}.json"))["results"] for m, s in (("atomic", ""), ("bulk", "-bulk"), ("overlap", "-overlap"))}
print("D causal N | bwd TFLOP/s: bulk dQ | atomic dQ (default) | overlap | bulk/atomic | overlap/atomic")
for x, y, z in zip(r["bulk"], r["atomic"], r["overlap"]):
    print(f"{x['D']} {x['causal']} {x['N']} | {x['bwd_tflops']:.1f} | {y['bwd_tflops']:.1f} | {z['bwd_tflops']:.1f} | {x['bwd_tflops'] / y['bwd_tflops']:.3f} | {z['bwd_tflops'] / y['bwd_tflops']:.3f}")
PY
timeout 110 python3 bench/compare_sdpa.py --flashgrad-json $L/bench.json --seconds 0.2 --reps 5 \
  --out-json $L/sdpa.json --out-md $L/sdpa.md > $L/sdpa.log 2>&1; el "compare_sdpa rc $?"
grep -E "flash \|" $L/sdpa.md | awk -F'|' '{print $3,$4,$5,$8,$9,$10,$18,$19}' | tee -a $FINAL/summary.txt
pack
for tool in memcheck synccheck racecheck; do
  spec="$RACE"; [ $tool = memcheck ] && spec="$RACE,$NEW"
  FLASHGRAD_BWD_DQ=bulk timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_attention_kernels \
    "$spec" > $L/$tool.log 2>&1 &
done
wait
for tool in memcheck synccheck racecheck; do
  el "$tool: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/$tool.log | tail -1) | $(grep -c 'cuda-forward:tma' $L/$tool.log) TMA-forward lines | $(tail -2 $L/$tool.log | grep -E 'passed|failed')"
done
pack
for shape in "64 on 1024" "128 off 8192"; do
  set -- $shape
  timeout 60 ncu --metrics gpu__time_duration.sum -k 'regex:bwd_|dkdv' --launch-count 6 \
    build/flashgrad bench attention --dtype bf16 --head-dim $1 --causal $2 --min-len $3 --max-len $3 \
    --reps 1 --seconds 0.02 --no-check > $L/ncu-times-$1-$2-$3.txt 2>&1
  el "ncu times D $1 causal $2 N $3 rc $?"
  grep -E "bwd_|dkdv|gpu__time_duration" $L/ncu-times-$1-$2-$3.txt | head -12 | tee -a $FINAL/summary.txt
done
[ $(left) -gt 60 ] && timeout $(( $(left) > 90 ? 90 : $(left) )) ncu --set full -k regex:dkdv --launch-count 1 \
  build/flashgrad bench attention --dtype bf16 --head-dim 64 --causal off --min-len 4096 --max-len 4096 \
  --reps 1 --seconds 0.02 --no-check > $L/ncu-dkdv-64-4096.txt 2>&1
el "ncu full dkdv rc $?"
pack
if [ $(left) -gt 140 ]; then run_compare gpt12 --preset gpt12 --steps 20 --warmup 5; fi
pack
el done
