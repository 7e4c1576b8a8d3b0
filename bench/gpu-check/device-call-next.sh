#!/bin/bash
# Device call for the next session (after call q of 2026-12-07): what is not yet run on a GPU,
# then the issue tables. (1) The TMA forward under compute-sanitizer: the race case now has a
# maskless pass, which the TMA forward takes (the sanitizer runs of calls p and q never ran it);
# racecheck gets 200 s (it ran past 60 s in call q). (2) The head-major work order
# (FLASHGRAD_TMA_VARIANT=hm, written after call q to win back call p's L2 sharing at D 128,
# short N): its sweep, then `bench attention` of the default, hm and np side by side. (3) SDPA
# beside the best form, and the three training configs beside PyTorch (the H100 table of the
# training-throughput issue). Ask for nvidia-h100-x1.
#   LIMIT=580 bash bench/gpu-check/device-call-next.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-580}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build
for v in "" hm sync; do
  FLASHGRAD_TMA_VARIANT=$v timeout 60 build/tests/test_attention_kernels \
    "attention cuda: every kernel of the tables against the reference" > $L/tk-$v.log 2>&1
  el "sweep variant '$v' rc $? $(tail -3 $L/tk-$v.log | grep -E 'passed|failed')"
done
timeout 60 build/tests/test_attention_kernels "attention cuda race check: bf16" > $L/race.log 2>&1
el "race case rc $? $(grep -c 'cuda-forward:tma' $L/race.log) TMA-forward lines"
for tool in memcheck synccheck; do
  timeout 90 compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_attention_kernels \
    "attention cuda race check: bf16" > $L/$tool.log 2>&1
  el "$tool rc $? $(grep -E 'ERROR SUMMARY' $L/$tool.log | tail -1)"
done
timeout 200 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_kernels \
  "attention cuda race check: bf16" > $L/racecheck.log 2>&1
el "racecheck rc $? $(grep -E 'RACECHECK SUMMARY' $L/racecheck.log | tail -1)"
pack
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2"
for v in "" hm np; do  # the default checked against the fp64 reference (its SDPA table says so)
  FLASHGRAD_TMA_VARIANT=$v timeout 60 build/flashgrad $B $([ -n "$v" ] && echo --no-check) \
    --json $L/v-$v.json > $L/v-$v.log 2>&1
  el "bench attention variant '$v' rc $?"
done
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]; names = ["", "hm", "np"]
runs = {v: json.load(open(f"{L}/v-{v}.json"))["results"] for v in names}
print("D causal N | forward TFLOP/s: default | hm | np")
for i, r in enumerate(runs[""]):
    print(f"{r['D']} {r['causal']} {r['N']} | " + " | ".join(f"{runs[v][i]['fwd_tflops']:.1f}" for v in names))
PY
pack
if [ $(left) -gt 300 ]; then
  timeout 100 python3 bench/compare_sdpa.py --flashgrad-json $L/v-.json --seconds 0.2 --reps 5 \
    --out-json $L/sdpa.json --out-md $L/sdpa.md > $L/sdpa.log 2>&1; el "compare_sdpa rc $?"
fi
pack
compare_all_configs
pack
el done
