#!/bin/bash
# Device call (session 4, call 4, short): the new tests of every elementwise kernel form, the
# split reductions and the phase timer, on the GPU and under memcheck.
#   bash bench/gpu-check/device-call-2026-11-28-j.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
build test_elementwise test_reduce test_matmul
for t in test_elementwise test_reduce test_matmul; do
  build/tests/$t "[cuda]" > $L/t-$t.log 2>&1; el "$t cuda rc $? $(tail -2 $L/t-$t.log | head -1)"
  grep -A12 FAILED $L/t-$t.log | head -30 | tee -a $FINAL/summary.txt
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$t "[cuda]" > $L/mc-$t.log 2>&1
  el "memcheck $t rc $? $(grep -E 'ERROR SUMMARY' $L/mc-$t.log | tail -1)"
done
tar czf $FINAL/logs.tgz -C $FINAL l && rm -rf $L
el done
