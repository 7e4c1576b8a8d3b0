#!/bin/bash
# Device call (2026-12-07, call f, short): head dims 96 and 256 (SIMT kernels) beside PyTorch's
# SDPA (bf16, D 96 and 256, N 1024-4096), racecheck of their race case, the split-KV decode
# kernel at 4 to 16 blocks per SM (8k and 32k keys, MHA and GQA), then Nsight Compute on
# the LayerNorm kernels at the gpt12 shape (for the training-throughput issue: why the forward
# runs at 57% of copy bandwidth and the backward at 40%).
#   LIMIT=400 bash bench/gpu-check/device-call-2026-12-07-f.sh   (repository root, .deps carried)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-400}
build
timeout 60 build/tests/test_attention_kernels "[cuda]" > $L/attention-kernels.log 2>&1
el "test_attention_kernels [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/attention-kernels.log | tail -1)"
FLASHGRAD_DECODE_BLOCKS_PER_SM=16 timeout 30 build/tests/test_attention_decode "[cuda]" > $L/decode-bps16.log 2>&1
el "test_attention_decode [cuda] at 16 blocks/SM rc $? $(grep -E "All tests passed|test cases:" $L/decode-bps16.log | tail -1)"
# The split-KV kernel's blocks per SM (FLASHGRAD_DECODE_BLOCKS_PER_SM; 4 is the default).
for n in 4 6 8 12 16; do
  FLASHGRAD_DECODE_BLOCKS_PER_SM=$n timeout 15 build/flashgrad bench decode-attention --lens 8192,32768 \
    --json $L/dattn-mha-bps$n.json > $L/dattn-mha-bps$n.log 2>&1
  FLASHGRAD_DECODE_BLOCKS_PER_SM=$n timeout 15 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 \
    --head-dim 128 --lens 8192,32768 --json $L/dattn-gqa-bps$n.json > $L/dattn-gqa-bps$n.log 2>&1
  el "blocks/SM $n: $(grep -hE '^ +(8192|32768) ' $L/dattn-mha-bps$n.log $L/dattn-gqa-bps$n.log | awk '{print $1, $3, $5}' | tr '\n' ' ')"
done
pack
timeout 90 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_kernels \
  "attention cuda race check: head dims 96 and 256" > $L/racecheck-dims.log 2>&1
el "racecheck D 96/256 rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-dims.log | tail -1)"
pack
timeout 60 build/flashgrad bench attention --dtype bf16 --head-dim 96,256 --causal both --min-len 1024 --max-len 4096 \
  --seconds 0.2 --reps 5 --json $L/bf16-dims.json > $L/bf16-dims.log 2>&1; el "bench attention D 96/256 rc $?"
grep -E "^ +(96|256) " $L/bf16-dims.log | tee -a $FINAL/summary.txt
timeout 60 python3 bench/compare_sdpa.py --flashgrad-json $L/bf16-dims.json --seconds 0.2 --reps 5 \
  --out-md $L/bf16-dims-sdpa.md > $L/bf16-dims-sdpa.log 2>&1; el "compare_sdpa rc $?"
grep "| bf16" $L/bf16-dims-sdpa.md >> $FINAL/summary.txt
pack
left=$(( LIMIT - 15 - ($(date +%s) - T0) ))
[ $left -gt 30 ] && timeout $left ncu --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
  --section LaunchStats --section WarpStateStats -k regex:layer_norm --launch-skip 2 --launch-count 4 \
  build/flashgrad bench ops --reps 3 > $L/ncu-layernorm.txt 2>&1; el "ncu layer_norm rc $?"
pack
el done
