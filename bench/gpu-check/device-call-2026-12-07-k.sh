#!/bin/bash
# Device call (2026-12-07, call k): the tree as it lands (the cluster decode form with four
# warps the default for one or two rows per kv head): ctest -L cuda, racecheck of the one-row
# decode case, bench decode-attention (eager and graphed), then compare_train on the small preset
# and on gpt24 at batch 32 beside PyTorch (the H100 figures of the throughput issue).
#   LIMIT=390 bash bench/gpu-check/device-call-2026-12-07-k.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-390}
build
ctest_cuda 90
timeout 40 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one row per kv head under racecheck" > $L/racecheck-decode-row.log 2>&1
el "racecheck one row per kv head rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode-row.log | tail -1)"
timeout 20 build/flashgrad bench decode-attention --json $L/dattn-mha.json > $L/dattn-mha.log 2>&1
el "decode-attention rc $? [L eager-us GB/s graphed-us GB/s]: $(grep -hE '^ +[0-9]+ \|' $L/dattn-mha.log | awk '{printf "%s %s %s %s %s; ", $1, $3, $5, $7, $9}')"
pack
run_compare small --preset small --steps 20 --warmup 5
left=$(( LIMIT - 10 - ($(date +%s) - T0) ))
if [ $left -gt 160 ]; then run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3; else el "no time for gpt24 ($left s left)"; fi
pack
el done
