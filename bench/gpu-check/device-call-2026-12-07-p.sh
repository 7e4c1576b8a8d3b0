#!/bin/bash
# Call p (2026-12-07, third session): the warp-specialised TMA forward (kernels/attention/
# sm90ws/forward.cuh, table name "tma") on the H100. Its tests first (every kernel of the
# tables against the fp64 reference, the tensor-core cases), then `bench attention` with and
# without it (FLASHGRAD_ATTENTION_TMA=0 is the previous default) and PyTorch SDPA beside, the
# `cuda` tests, compute-sanitizer memcheck, racecheck and synccheck on the bf16 race case, and
# gpt12 beside PyTorch if time is left. Ask for nvidia-h100-x1.
#   LIMIT=570 bash bench/gpu-check/device-call-2026-12-07-p.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-570}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build
timeout 100 build/tests/test_attention_kernels "attention cuda: every kernel of the tables against the reference" > $L/tk.log 2>&1
el "test_attention_kernels sweep rc $? $(tail -3 $L/tk.log | grep -E 'passed|failed')"
grep -E "FAILED|failed|with expansion|cuda-forward:tma" $L/tk.log | head -12 | tee -a $FINAL/summary.txt
timeout 100 build/tests/test_attention_tc "[cuda]" > $L/ttc.log 2>&1
el "test_attention_tc rc $? $(tail -3 $L/ttc.log | grep -E 'passed|failed')"
grep -E "FAILED|with expansion" $L/ttc.log | head -8 | tee -a $FINAL/summary.txt
pack
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --seconds 0.2 --reps 5"
timeout 100 build/flashgrad $B --json $L/tma.json > $L/tma.log 2>&1; el "bench attention (tma) rc $?"
FLASHGRAD_ATTENTION_TMA=0 timeout 100 build/flashgrad $B --json $L/notma.json > $L/notma.log 2>&1
el "bench attention (TMA off) rc $?"
pack
timeout 120 python3 bench/compare_sdpa.py --flashgrad-json $L/tma.json \
  --seconds 0.2 --reps 5 --out-json $L/sdpa.json --out-md $L/sdpa.md > $L/sdpa.log 2>&1
el "compare_sdpa rc $?"; cp $L/sdpa.md $FINAL/sdpa.md 2>/dev/null
pack
ctest_cuda 120
for tool in memcheck racecheck synccheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_attention_kernels \
    "attention cuda race check: bf16" > $L/$tool-race-bf16.log 2>&1
  el "$tool race bf16 rc $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $L/$tool-race-bf16.log | tail -1)"
done
pack
if [ $(left) -gt 80 ]; then run_compare gpt12 --preset gpt12 --steps 20 --warmup 5; fi
if [ $(left) -gt 130 ]; then run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3; fi
pack
el done
