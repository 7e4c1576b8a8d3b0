#!/bin/bash
# Device call z of 2026-12-07 (for the session after the eighth): what call x left open.
#   1. `ctest -L cuda` on the whole tree (the mended "O and dO rows off 16-byte boundaries"
#      test among them: both calls now run on the kernel the dispatcher picks for the
#      misaligned one);
#   2. racecheck on the bf16 race case to its end (in parallel with 3's), with every consumer
#      thread of the warp-specialised backward arriving on the "empty" barrier (call x: 24
#      hazards on the LSE/D_i stage; call y: none in the 5 of 6 cases it reached in its time);
#   3. the warp-specialised backward's pipelined form (FLASHGRAD_TMA_BWD_DQ=pipe, D 64: tile
#      n's scores issued ahead of tile n-1's dV, dK, dQ, its elementwise steps under them):
#      a smoke run, the sweep and test_attention_tc with it, racecheck on the race case;
#   4. backward TFLOP/s: the wgmma block's overlap form (FLASHGRAD_BWD_DQ=overlap, never
#      timed) and the warp-specialised one's split and pipelined forms against the default,
#      same call;
#   5. Nsight Compute: the time of each kernel of both backwards (wgmma and warp-specialised) at
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
PIPE="FLASHGRAD_ATTENTION_TMA_BWD=1 FLASHGRAD_TMA_BWD_DQ=pipe"
env $PIPE timeout 40 build/flashgrad bench attention --dtype bf16 --head-dim 64 --causal both \
  --min-len 1024 --max-len 1024 --reps 1 --seconds 0.02 > $L/smoke-pipe.log 2>&1
PIPE_OK=$?; el "smoke: pipelined TMA backward rc $PIPE_OK"; tail -4 $L/smoke-pipe.log | tee -a $FINAL/summary.txt
# racecheck of the split form (the default of the TMA backward) and, beside it, of the pipelined one
timeout 180 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_kernels \
  "attention cuda race check: bf16" > $L/racecheck.log 2>&1 &
if [ $PIPE_OK = 0 ]; then
  env $PIPE timeout 60 build/tests/test_attention_kernels "attention cuda: every kernel of the tables against the reference" > $L/sweep-pipe.log 2>&1
  el "sweep, pipelined form, rc $? $(tail -3 $L/sweep-pipe.log | grep -E 'passed|failed')"
  env $PIPE timeout 100 build/tests/test_attention_tc "[cuda]" > $L/tc-pipe.log 2>&1
  el "test_attention_tc [cuda], pipelined form chosen, rc $? $(tail -3 $L/tc-pipe.log | grep -E 'passed|failed')"
  env $PIPE timeout 170 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_kernels \
    "attention cuda race check: bf16" > $L/racecheck-pipe.log 2>&1
  el "racecheck, pipelined form: $(grep -E 'RACECHECK SUMMARY' $L/racecheck-pipe.log | tail -1) $(tail -2 $L/racecheck-pipe.log | grep -E 'passed|failed')"
fi
wait
el "racecheck bf16 race case: $(grep -E 'RACECHECK SUMMARY' $L/racecheck.log | tail -1) | $(grep -c 'cuda-backward:tma' $L/racecheck.log) TMA-backward lines | $(tail -2 $L/racecheck.log | grep -E 'passed|failed')"
grep -m3 -A3 "Error: Race" $L/racecheck.log | tee -a $FINAL/summary.txt
pack
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2 --no-check"
run_b() { local name=$1; shift; env "$@" timeout 70 build/flashgrad $B --json $L/bench-$name.json > $L/bench-$name.log 2>&1; el "bench attention $name rc $?"; }
run_b atomic FLASHGRAD_BWD_DQ=atomic
run_b overlap FLASHGRAD_BWD_DQ=overlap
run_b tma FLASHGRAD_ATTENTION_TMA_BWD=1
[ $PIPE_OK = 0 ] && run_b pipe FLASHGRAD_ATTENTION_TMA_BWD=1 FLASHGRAD_TMA_BWD_DQ=pipe
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, os, sys
L = sys.argv[1]
runs = [m for m in ("atomic", "overlap", "tma", "pipe") if os.path.exists(f"{L}/bench-{m}.json")]
r = {m: json.load(open(f"{L}/bench-{m}.json"))["results"] for m in runs}
print("D causal N | bwd TFLOP/s: " + " | ".join(runs) + " | " + " | ".join(f"{m}/atomic" for m in runs[1:]))
for i, x in enumerate(r["atomic"]):
    v = [r[m][i]["bwd_tflops"] for m in runs]
    print(f"{x['D']} {x['causal']} {x['N']} | " + " | ".join(f"{y:.1f}" for y in v) + " | " +
          " | ".join(f"{y / v[0]:.3f}" for y in v[1:]))
PY
pack
ncu_backward_times
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
