#!/bin/bash
# Device call x of 2026-12-07 (eighth session): the warp-specialised TMA backward
# (sm90ws/backward.cuh, "tma" in the backward table, chosen only with
# FLASHGRAD_ATTENTION_TMA_BWD=1) on a GPU for the first time, with what calls r and v would have
# checked of the earlier sessions' work:
#   1. a smoke run of the new backward at D 64/128 in both dQ forms (split, and
#      FLASHGRAD_TMA_BWD_DQ=own), bench attention's reference check, with a short timeout: a
#      pipeline that hangs shows here, and the sweep below is then skipped;
#   2. test_attention_kernels [cuda] (every kernel of both tables by name: the new backward,
#      the D 96/256 mma.sync kernels, the race cases; the sweep again in the own form),
#      test_attention_tc [cuda] with the new backward chosen (both forms),
#      test_attention_decode [cuda];
#   3. the bf16 race case under memcheck, synccheck and racecheck side by side (the TMA forward
#      and the new backward under the sanitizers for the first time), then the own form's;
#   4. backward TFLOP/s: wgmma with atomic dQ (the default), wgmma with bulk dQ, the new one in
#      both forms; compare_sdpa on the default, and the others' ratios to the same SDPA rows;
#   5. Nsight Compute times of the backward kernels (both kinds) at D 64 causal N 1024 and
#      D 128 N 8192; then the full section set of the new dK/dV kernel at D 128, N 4096.
#   LIMIT=590 bash bench/gpu-check/device-call-2026-12-07-x.sh   (repository root; carry .deps)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-590}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build flashgrad test_attention_kernels test_attention_tc test_attention_decode
SMOKE_OK=1
for form in split own; do
  for d in 64 128; do
    FLASHGRAD_TMA_BWD_DQ=$form FLASHGRAD_ATTENTION_TMA_BWD=1 timeout 40 build/flashgrad bench attention --dtype bf16 --head-dim $d \
      --causal both --min-len 1024 --max-len 1024 --reps 1 --seconds 0.02 > $L/smoke-$form-$d.log 2>&1
    rc=$?; [ $rc -ne 0 ] && SMOKE_OK=0
    el "smoke: TMA backward, $form dQ, D $d rc $rc $(grep -ciE 'mismatch|fail' $L/smoke-$form-$d.log) failure lines"
    tail -4 $L/smoke-$form-$d.log | tee -a $FINAL/summary.txt
  done
done
pack
if [ $SMOKE_OK = 1 ]; then
  timeout 170 build/tests/test_attention_kernels "[cuda]" > $L/tk.log 2>&1
  el "test_attention_kernels [cuda] rc $? $(tail -3 $L/tk.log | grep -E 'passed|failed')"
  grep -E "FAILED|with expansion" -A3 $L/tk.log | head -20 | tee -a $FINAL/summary.txt
  FLASHGRAD_TMA_BWD_DQ=own timeout 60 build/tests/test_attention_kernels \
    "attention cuda: every kernel of the tables against the reference" > $L/tk-own.log 2>&1
  el "sweep, own dQ form, rc $? $(tail -3 $L/tk-own.log | grep -E 'passed|failed')"
  for form in split own; do
    FLASHGRAD_TMA_BWD_DQ=$form FLASHGRAD_ATTENTION_TMA_BWD=1 timeout 100 build/tests/test_attention_tc "[cuda]" > $L/tc-$form.log 2>&1
    el "test_attention_tc [cuda], TMA backward chosen, $form dQ, rc $? $(tail -3 $L/tc-$form.log | grep -E 'passed|failed')"
    grep -E "FAILED|with expansion" -A3 $L/tc-$form.log | head -12 | tee -a $FINAL/summary.txt
  done
  grep -hE "^measured cuda-backward:(tma|wgmma)" $L/tk.log | sort -k6,6g | tail -8 > $L/measured-tma.txt
else
  el "the TMA backward failed its smoke run: sweep skipped (it runs every kernel by name)"
  timeout 100 build/tests/test_attention_tc "[cuda]" > $L/tc.log 2>&1
  el "test_attention_tc [cuda] rc $? $(tail -3 $L/tc.log | grep -E 'passed|failed')"
fi
for form in cluster split; do
  FLASHGRAD_DECODE_KERNEL=$form timeout 60 build/tests/test_attention_decode "[cuda]" > $L/decode-$form.log 2>&1
  el "test_attention_decode [cuda], $form form, rc $? $(tail -3 $L/decode-$form.log | grep -E 'passed|failed')"
done
pack
if [ $SMOKE_OK = 1 ]; then
  sanitize_side_by_side "attention cuda race check: bf16" ""
  sanitize_side_by_side "attention cuda race check: bf16" -own FLASHGRAD_TMA_BWD_DQ=own
fi
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2"
timeout 70 build/flashgrad $B --json $L/bench.json > $L/bench.log 2>&1
el "bench attention (default) rc $?"
FLASHGRAD_BWD_DQ=bulk timeout 70 build/flashgrad $B --no-check --json $L/bench-bulk.json > $L/bench-bulk.log 2>&1
el "bench attention, FLASHGRAD_BWD_DQ=bulk, rc $?"
if [ $SMOKE_OK = 1 ]; then
  FLASHGRAD_ATTENTION_TMA_BWD=1 timeout 70 build/flashgrad $B --json $L/bench-tma.json > $L/bench-tma.log 2>&1
  el "bench attention, FLASHGRAD_ATTENTION_TMA_BWD=1, rc $?"
  FLASHGRAD_TMA_BWD_DQ=own FLASHGRAD_ATTENTION_TMA_BWD=1 timeout 70 build/flashgrad $B --json $L/bench-tma-own.json > $L/bench-tma-own.log 2>&1
  el "bench attention, FLASHGRAD_ATTENTION_TMA_BWD=1, own dQ form, rc $?"
fi
pack
timeout 110 python3 bench/compare_sdpa.py --flashgrad-json $L/bench.json --seconds 0.2 --reps 5 \
  --out-json $L/sdpa.json --out-md $L/sdpa.md > $L/sdpa.log 2>&1; el "compare_sdpa rc $?"
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, os, sys
L = sys.argv[1]
rows = {(r["D"], r["causal"], r["N"]): r for r in json.load(open(f"{L}/sdpa.json"))["rows"]}
runs = {"atomic": "bench.json", "bulk": "bench-bulk.json", "tma": "bench-tma.json",
        "tma-own": "bench-tma-own.json"}
got = {m: {(x["D"], x["causal"], x["N"]): x for x in json.load(open(f"{L}/{f}"))["results"]}
       for m, f in runs.items() if os.path.exists(f"{L}/{f}")}
print("D causal N | bwd TFLOP/s " + " | ".join(got) + " | SDPA flash | " +
      " | ".join(f"{m}/flash" for m in got) + " | fwd+bwd " + " | ".join(f"{m}/flash" for m in got))
for k, r in sorted(rows.items()):
    f = r["flash"]
    bw = [got[m][k]["bwd_tflops"] if k in got[m] else float("nan") for m in got]
    fb = [got[m][k]["fwdbwd_tflops"] if k in got[m] else float("nan") for m in got]
    print(f"{k[0]} {k[1]} {k[2]} | " + " | ".join(f"{x:.1f}" for x in bw) + f" | {f['bwd_tflops']:.1f} | " +
          " | ".join(f"{x / f['bwd_tflops']:.3f}" for x in bw) + " | " +
          " | ".join(f"{x / f['fwdbwd_tflops']:.3f}" for x in fb))
PY
pack
ncu_backward_times
if [ $SMOKE_OK = 1 ] && [ $(left) -gt 60 ]; then
  FLASHGRAD_ATTENTION_TMA_BWD=1 timeout $(( $(left) > 90 ? 90 : $(left) )) ncu --set full -k regex:sm90ws.*dkdv --launch-count 1 \
    build/flashgrad bench attention --dtype bf16 --head-dim 128 --causal off --min-len 4096 --max-len 4096 \
    --reps 1 --seconds 0.02 --no-check > $L/ncu-tma-dkdv-128-4096.txt 2>&1
  el "ncu full TMA dkdv rc $?"
fi
pack
el done
