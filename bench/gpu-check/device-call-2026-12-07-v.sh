#!/bin/bash
# Device call v of 2026-12-07 (seventh session), the short form for little device time: does
# everything built without a GPU since call q pass its tests? test_attention_kernels (the
# sweep at D 32-256: the mma.sync kernels at 96 and 256 now; the vector backward passes; the
# race cases), test_attention_tc, test_attention_decode under both decode forms (D 256 now),
# and memcheck on the bf16 race case (the TMA forward's first sanitizer run) and the 96/256 one.
#   LIMIT=400 bash bench/gpu-check/device-call-2026-12-07-v.sh   (repository root; carry .deps)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-400}
left() { echo $(( LIMIT - 10 - ($(date +%s) - T0) )); }
build flashgrad test_attention_kernels test_attention_tc test_attention_decode
for t in attention_kernels attention_tc; do
  timeout 120 build/tests/test_$t "[cuda]" > $L/$t.log 2>&1
  el "test_$t [cuda] rc $? $(tail -3 $L/$t.log | grep -E 'passed|failed')"
  grep -E "FAILED|with expansion" -A3 $L/$t.log | head -16 | tee -a $FINAL/summary.txt
done
for form in cluster split; do
  FLASHGRAD_DECODE_KERNEL=$form timeout 60 build/tests/test_attention_decode "[cuda]" > $L/decode-$form.log 2>&1
  el "test_attention_decode [cuda], $form form, rc $? $(tail -3 $L/decode-$form.log | grep -E 'passed|failed')"
done
grep -hE "^measured cuda-(forward|backward):mma" $L/attention_kernels.log | grep -E "D=(96|256) " | sort -k6,6g | tail -12 > $L/measured-dims.txt
pack
for spec in "attention cuda race check: bf16" "attention cuda race check: head dims 96 and 256"; do
  [ $(left) -gt 40 ] || { el "no time for memcheck on '$spec'"; break; }
  timeout $(( $(left) > 150 ? 150 : $(left) - 5 )) compute-sanitizer --tool memcheck --error-exitcode 9 \
    build/tests/test_attention_kernels "$spec" > "$L/memcheck-${spec##*: }.log" 2>&1
  el "memcheck '$spec' rc $? $(grep -E 'ERROR SUMMARY' "$L/memcheck-${spec##*: }.log" | tail -1)"
  pack
done
el done
