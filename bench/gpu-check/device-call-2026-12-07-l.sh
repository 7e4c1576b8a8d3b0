#!/bin/bash
# Device call (2026-12-07, call l, short; call k's machine did not start): the tree as it lands
# (the cluster decode form with four warps the default for one or two rows per kv head): the
# decode and generation tests, racecheck of the one-row decode case, bench decode-attention
# (eager and graphed), then compare_train on the small preset if time is left.
#   LIMIT=240 bash bench/gpu-check/device-call-2026-12-07-l.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-240}
build flashgrad test_attention_decode test_generate
for t in test_attention_decode test_generate; do
  timeout 40 build/tests/$t "[cuda]" > $L/$t.log 2>&1
  el "$t [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/$t.log | tail -1)"
done
FLASHGRAD_DECODE_KERNEL=cluster timeout 30 build/tests/test_attention_decode "[cuda]" > $L/decode-cluster.log 2>&1
el "test_attention_decode [cuda] cluster form on every shape rc $? $(grep -E 'All tests passed|test cases:' $L/decode-cluster.log | tail -1)"
timeout 40 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one row per kv head under racecheck" > $L/racecheck-decode-row.log 2>&1
el "racecheck one row per kv head rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode-row.log | tail -1)"
timeout 20 build/flashgrad bench decode-attention --json $L/dattn-mha.json > $L/dattn-mha.log 2>&1
el "decode-attention rc $? [L eager-us GB/s graphed-us GB/s]: $(grep -hE '^ +[0-9]+ \|' $L/dattn-mha.log | awk '{printf "%s %s %s %s %s; ", $1, $3, $5, $7, $9}')"
pack
left=$(( LIMIT - 10 - ($(date +%s) - T0) ))
if [ $left -gt 80 ]; then run_compare small --preset small --steps 20 --warmup 5; else el "no time for compare_train small ($left s left)"; fi
pack
el done
