#!/bin/bash
# Device call for the next session: checks what landed after the last GPU run of 2026-12-07
# (commit 9290224, host-side review fixes of the decode kernel's cluster form, a long-cache KV
# test), then the throughput figures still missing on the H100.
#   LIMIT=560 bash bench/gpu-check/device-call-next.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-560}
build
ctest_cuda 150
memcheck 60 test_attention_decode test_attention_ops
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one row per kv head under racecheck" > $L/racecheck-decode-row.log 2>&1
el "racecheck one row per kv head rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode-row.log | tail -1)"
timeout 30 build/flashgrad bench decode-attention --json $L/dattn-mha.json > $L/dattn-mha.log 2>&1
el "decode-attention rc $?"; grep -E '^ +[0-9]+ \|' $L/dattn-mha.log | tee -a $FINAL/summary.txt
pack
left=$(( LIMIT - 10 - ($(date +%s) - T0) ))
if [ $left -gt 180 ]; then run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3; else el "no time for gpt24 ($left s left)"; fi
pack
el done
