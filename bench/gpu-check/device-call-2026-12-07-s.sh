#!/bin/bash
# Device call s of 2026-12-07 (fourth session), after call r: the training-throughput issue's
# table (small, gpt12, gpt24 at batch 32 beside PyTorch eager and torch.compile) with the
# backward of call r's choice; `flashgrad gradcheck attention --device cuda`; `ctest -L cuda`;
# the TMA forward's head-major order (FLASHGRAD_TMA_VARIANT=hm) against the default, forward
# TFLOP/s side by side (the D 128 short-N regression of call q); time allowing, Nsight Compute's
# full section set on the TMA forward at gpt12's shape (D 64, causal, N 1024) and at D 128,
# N 8192 (the attention issue asks for a summary of each new kernel in bench/NOTES).
#   LIMIT=590 bash bench/gpu-check/device-call-2026-12-07-s.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-590}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build
ctest_cuda 150
timeout 90 build/flashgrad gradcheck attention --device cuda > $L/gradcheck.log 2>&1
el "gradcheck attention cuda rc $? $(grep -ciE 'fail' $L/gradcheck.log) lines with 'fail'"
tail -3 $L/gradcheck.log | tee -a $FINAL/summary.txt
pack
compare_all_configs
B="bench attention --dtype bf16 --head-dim 64,128 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2 --no-check"
if [ $(left) -gt 70 ]; then
  for v in "" hm; do
    FLASHGRAD_TMA_VARIANT=$v timeout 35 build/flashgrad $B --json $L/v-$v.json > $L/v-$v.log 2>&1
    el "bench attention variant '$v' rc $?"
  done
  python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]
a = json.load(open(f"{L}/v-.json"))["results"]; b = json.load(open(f"{L}/v-hm.json"))["results"]
print("D causal N | forward TFLOP/s: default | hm")
for x, y in zip(a, b):
    print(f"{x['D']} {x['causal']} {x['N']} | {x['fwd_tflops']:.1f} | {y['fwd_tflops']:.1f}")
PY
fi
pack
for shape in "64 on 1024" "128 off 8192"; do
  set -- $shape
  [ $(left) -gt 50 ] || { el "no time for ncu on the TMA forward at D $1"; break; }
  timeout $(( $(left) > 70 ? 70 : $(left) - 5 )) ncu --set full --kernel-name-base demangled \
    -k regex:sm90ws --launch-count 1 build/flashgrad bench attention --dtype bf16 --head-dim $1 \
    --causal $2 --min-len $3 --max-len $3 --reps 1 --seconds 0.02 --no-check \
    > $L/ncu-tma-fwd-$1-$2-$3.txt 2>&1
  el "ncu full TMA forward D $1 causal $2 N $3 rc $?"
  grep -E "Duration|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy" \
    $L/ncu-tma-fwd-$1-$2-$3.txt | head -8 | tee -a $FINAL/summary.txt
  pack
done
el done
