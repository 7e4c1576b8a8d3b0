#!/bin/bash
# Device call z of 2026-12-07 (for the session after the eighth): what call x left open.
#   1. `ctest -L cuda` on the whole tree (the mended "O and dO rows off 16-byte boundaries"
#      test among them: both calls now run on the kernel the dispatcher picks for the
#      misaligned one);
#   2. racecheck on the bf16 race case to its end, with every consumer thread of the
#      warp-specialised backward arriving on the "empty" barrier (call x: 24 hazards on the
#      LSE/D_i stage; call y: none in the 5 of 6 cases it reached before the time ran out);
#   3. backward TFLOP/s: the wgmma block's overlap form (FLASHGRAD_BWD_DQ=overlap, never
#      timed) against its default, same call;
#   4. Nsight Compute: the time of each kernel of both backwards (wgmma and warp-specialised) at
#      gpt12's shape (D 64, causal, N 1024) and at D 128, N 8192 (call x's run of this had
#      `--causal yes/no`, which the CLI refuses), then the full section set of the wgmma dK/dV
#      kernel at D 64 and D 128, N 4096, for the NOTES summary the attention issue asks for.
#   LIMIT=590 bash bench/gpu-check/device-call-2026-12-07-z.sh   (repository root; carry .deps)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-590}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build
ctest_cuda 200
pack
timeout 180 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_kernels \
  "attention cuda race check: bf16" > $L/racecheck.log 2>&1
el "racecheck bf16 race case rc $? $(grep -E 'RACECHECK SUMMARY' $L/racecheck.log | tail -1) | $(grep -c 'cuda-backward:tma' $L/racecheck.log) TMA-backward lines | $(tail -2 $L/racecheck.log | grep -E 'passed|failed')"
grep -m3 -A3 "Error: Race" $L/racecheck.log | tee -a $FINAL/summary.txt
pack
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2 --no-check"
for m in atomic overlap; do
  FLASHGRAD_BWD_DQ=$m timeout 70 build/flashgrad $B --json $L/bench-$m.json > $L/bench-$m.log 2>&1
  el "bench attention, FLASHGRAD_BWD_DQ=$m, rc $?"
done
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]
a = json.load(open(f"{L}/bench-atomic.json"))["results"]; o = json.load(open(f"{L}/bench-overlap.json"))["results"]
print("D causal N | bwd TFLOP/s: atomic dQ (default) | overlap | overlap/atomic")
for x, y in zip(a, o):
    print(f"{x['D']} {x['causal']} {x['N']} | {x['bwd_tflops']:.1f} | {y['bwd_tflops']:.1f} | {y['bwd_tflops'] / x['bwd_tflops']:.3f}")
PY
pack
for shape in "64 on 1024" "128 off 8192"; do
  set -- $shape
  for v in 0 1; do
    [ $(left) -gt 40 ] || break
    FLASHGRAD_ATTENTION_TMA_BWD=$v timeout 40 ncu --metrics gpu__time_duration.sum -k 'regex:bwd_|dkdv' --launch-count 6 \
      build/flashgrad bench attention --dtype bf16 --head-dim $1 --causal $2 --min-len $3 --max-len $3 \
      --reps 1 --seconds 0.02 --no-check > $L/ncu-times-$1-$2-$3-tma$v.txt 2>&1
    el "ncu times D $1 causal $2 N $3 TMA_BWD=$v rc $?"
    grep -E "bwd_|dkdv|gpu__time_duration" $L/ncu-times-$1-$2-$3-tma$v.txt | head -8 | tee -a $FINAL/summary.txt
  done
done
pack
for d in 64 128; do
  [ $(left) -gt 70 ] || { el "no time for the full ncu run at D $d"; break; }
  timeout $(( $(left) > 90 ? 90 : $(left) - 5 )) ncu --set full --kernel-name-base demangled -k regex:sm90::dkdv \
    --launch-count 1 build/flashgrad bench attention --dtype bf16 --head-dim $d --causal off \
    --min-len 4096 --max-len 4096 --reps 1 --seconds 0.02 --no-check > $L/ncu-dkdv-$d-4096.txt 2>&1
  el "ncu full wgmma dkdv D $d rc $?"
  grep -E "Duration|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|Stall" \
    $L/ncu-dkdv-$d-4096.txt | head -10 | tee -a $FINAL/summary.txt
  pack
done
el done
