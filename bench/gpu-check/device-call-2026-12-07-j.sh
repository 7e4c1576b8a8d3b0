#!/bin/bash
# Device call (2026-12-07, call j): the split-KV decode kernel timed eagerly and in a CUDA
# graph (bench decode-attention's new graphed column), cluster form (eight and four warps)
# against the split + combine pair, cache cold in L2; racecheck of the one-row cluster form;
# compare_train gpt12 beside PyTorch (the 16-byte LayerNorm weights and the vector column sums).
#   LIMIT=450 bash bench/gpu-check/device-call-2026-12-07-j.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-450}
build flashgrad test_attention_decode
timeout 30 build/tests/test_attention_decode "[cuda]" > $L/decode.log 2>&1
el "test_attention_decode [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/decode.log | tail -1)"
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one row per kv head under racecheck" > $L/racecheck-decode-row.log 2>&1
el "racecheck one row per kv head rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode-row.log | tail -1)"
run_dattn() {  # name, env assignment, then bench arguments
  local name=$1 envs=$2; shift 2
  env $envs timeout 40 build/flashgrad bench decode-attention "$@" --json $L/dattn-$name.json > $L/dattn-$name.log 2>&1
  el "decode-attention $name ($envs) rc $? [L eager-us GB/s graphed-us GB/s]: $(grep -hE '^ +[0-9]+ \|' $L/dattn-$name.log | awk '{printf "%s %s %s %s %s; ", $1, $3, $5, $7, $9}')"
}
GQA="--batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 4096,8192,16384,32768"
run_dattn mha-auto FLASHGRAD_DECODE_KERNEL=auto
run_dattn mha-cluster128 FLASHGRAD_DECODE_CLUSTER_THREADS=128
run_dattn mha-split FLASHGRAD_DECODE_KERNEL=split
run_dattn gqa-auto FLASHGRAD_DECODE_KERNEL=auto $GQA
run_dattn gqa-cluster FLASHGRAD_DECODE_KERNEL=cluster $GQA
pack
left=$(( LIMIT - 20 - ($(date +%s) - T0) ))
if [ $left -gt 150 ]; then run_compare gpt12 --preset gpt12 --steps 20 --warmup 5; else el "no time for compare_train ($left s left)"; fi
pack
el done
