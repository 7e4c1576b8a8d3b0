#!/bin/bash
# Device call y of 2026-12-07 (eighth session), the short check after call x: the
# warp-specialised backward with every consumer thread arriving on the "empty" barrier (call
# x's racecheck reported the producer's LSE/D_i stores against the reads of lanes that had
# not arrived themselves), under racecheck on the bf16 race case; and the O-rows test, which
# now moves only O (call x: the default tensor-core backward cannot take a misaligned dO).
#   LIMIT=230 bash bench/gpu-check/device-call-2026-12-07-y.sh   (repository root; carry .deps)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-230}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build test_attention_kernels
timeout 30 build/tests/test_attention_kernels "attention cuda backward: O rows off 16-byte boundaries" > $L/orows.log 2>&1
el "O rows test rc $? $(tail -3 $L/orows.log | grep -E 'passed|failed')"
timeout $(( $(left) - 5 )) compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_kernels \
  "attention cuda race check: bf16" > $L/racecheck.log 2>&1
el "racecheck rc $? $(grep -E 'RACECHECK SUMMARY' $L/racecheck.log | tail -1) $(tail -2 $L/racecheck.log | grep -E 'passed|failed')"
grep -m3 -A3 "Error: Race" $L/racecheck.log | tee -a $FINAL/summary.txt
pack
el done
