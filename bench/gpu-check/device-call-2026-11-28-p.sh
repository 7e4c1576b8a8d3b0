#!/bin/bash
# Device call (session 5, call 5). Call o measured gpt12 at 37.7 ms/step against 34.1 in call n
# after the MLP node took c_proj's input gradient to cuBLASLt (DGELU_BGRAD epilogue) and every
# plain product of the linear layer to cuBLASLt too. Now plain products are back on cuBLAS; this
# call times the step with the DGELU epilogue and without it (FLASHGRAD_DGELU_EPILOGUE=0), the
# bench ops rows of both, the cuda tests of the linear layer, then bench/compare_train.py beside
# PyTorch 2.11 (eager and torch.compile) with the faster setting on small, gpt12 and gpt24 at
# their preset batches and gpt24 at batch 32 (the largest power of two at which PyTorch eager
# still fits an 80 GB H100: about 47 GiB from its 12.4 GiB at batch 8); bench train at gpt12
# without dropout.
#   bash bench/gpu-check/device-call-2026-11-28-p.sh     (repository root; carry .deps and data)
source bench/gpu-check/lib.sh
build flashgrad_cli test_linear
build/tests/test_linear "[cuda]" > $L/t-linear.log 2>&1; el "test_linear cuda rc $? $(tail -2 $L/t-linear.log | head -1)"
FLASHGRAD_DGELU_EPILOGUE=0 build/tests/test_linear "[cuda]" > $L/t-linear-0.log 2>&1
el "test_linear cuda (no DGELU epilogue) rc $? $(tail -2 $L/t-linear-0.log | head -1)"
ms() { grep -o "ms/step [0-9.]*" "$1" | awk '{print $2}'; }
timeout 60 build/flashgrad bench train --preset gpt12 --steps 10 --warmup 3 > $L/bt-epi.log 2>&1
FLASHGRAD_DGELU_EPILOGUE=0 timeout 60 build/flashgrad bench train --preset gpt12 --steps 10 --warmup 3 > $L/bt-noepi.log 2>&1
cat $L/bt-epi.log $L/bt-noepi.log | tee -a $FINAL/summary.txt
a=$(ms $L/bt-epi.log); b=$(ms $L/bt-noepi.log)
el "gpt12 ms/step: DGELU epilogue $a, without $b"
if awk "BEGIN{exit !($b < $a)}"; then export FLASHGRAD_DGELU_EPILOGUE=0; fi
el "compare_train runs with FLASHGRAD_DGELU_EPILOGUE=${FLASHGRAD_DGELU_EPILOGUE:-unset}"
timeout 60 build/flashgrad bench ops 2>&1 | tail -9 | tee -a $FINAL/summary.txt
FLASHGRAD_DGELU_EPILOGUE=0 timeout 60 build/flashgrad bench ops 2>&1 | tail -2 | tee -a $FINAL/summary.txt
pack
run_compare() {  # name, then compare_train.py's arguments
  local name=$1; shift
  timeout 170 python3 bench/compare_train.py --device cuda --dtype bf16 --modes eager,compile \
    --flashgrad build/flashgrad --out-json $L/train-$name.json "$@" > $L/train-$name.log 2>&1
  el "compare_train $name rc $?"; grep -v -i warn $L/train-$name.log | tail -7 | tee -a $FINAL/summary.txt
  pack
}
run_compare gpt12 --preset gpt12 --steps 20 --warmup 5
run_compare small --preset small --steps 20 --warmup 5
run_compare gpt24 --preset gpt24 --steps 20 --warmup 5
run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3
timeout 60 build/flashgrad bench train --preset gpt12 --dropout 0 --steps 10 --warmup 3 2>&1 | tee -a $FINAL/summary.txt
el "bench train gpt12 dropout 0 rc $?"
pack
el done
