#!/bin/bash
# Device call (2026-12-07, call i): the cluster form of the split-KV decode kernel with eight
# warps a block (the default now for one or two rows per kv head) against four warps
# (FLASHGRAD_DECODE_CLUSTER_THREADS=128) and the split + combine pair (FLASHGRAD_DECODE_KERNEL=split),
# cache cold in L2; bench decode in both forms; ctest -L cuda (the decode cases under each form
# included); memcheck and racecheck of the decode cases; bench ops; compare_train gpt12 with
# the 16-byte LayerNorm weights and the vector column sums.
#   LIMIT=580 bash bench/gpu-check/device-call-2026-12-07-i.sh   (repository root, .deps carried)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-580}
build
ctest_cuda 150
pack
run_dattn() {  # name, env assignment, then bench arguments
  local name=$1 envs=$2; shift 2
  env $envs timeout 40 build/flashgrad bench decode-attention "$@" --json $L/dattn-$name.json > $L/dattn-$name.log 2>&1
  el "decode-attention $name ($envs) rc $?: $(grep -hE '^ +[0-9]+ \|' $L/dattn-$name.log | awk '{printf "%s %s %s; ", $1, $3, $5}')"
}
GQA="--batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 4096,8192,16384,32768"
run_dattn mha-auto FLASHGRAD_DECODE_KERNEL=auto
run_dattn mha-cluster128 FLASHGRAD_DECODE_CLUSTER_THREADS=128
run_dattn mha-split FLASHGRAD_DECODE_KERNEL=split
run_dattn gqa-auto FLASHGRAD_DECODE_KERNEL=auto $GQA
run_dattn gqa-cluster FLASHGRAD_DECODE_KERNEL=cluster $GQA
run_dattn mha-auto-warm FLASHGRAD_DECODE_KERNEL=auto --warm-l2 --lens 8192,32768
pack
for form in auto split; do
  FLASHGRAD_DECODE_KERNEL=$form timeout 60 build/flashgrad bench decode --device cuda --json $L/decode-$form.json > $L/decode-$form.log 2>&1
  el "bench decode $form rc $?"; tail -4 $L/decode-$form.log | tee -a $FINAL/summary.txt
done
timeout 60 build/flashgrad bench ops --reps 5 > $L/ops.log 2>&1
el "bench ops rc $?"; grep -E "^ +[a-z]" $L/ops.log | tee -a $FINAL/summary.txt
pack
memcheck 60 test_attention_decode
FLASHGRAD_DECODE_KERNEL=cluster timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/test_attention_decode "[cuda]" > $L/mc-decode-cluster.log 2>&1
el "memcheck decode (cluster form on every shape) rc $? $(grep -E 'ERROR SUMMARY' $L/mc-decode-cluster.log | tail -1)"
timeout 80 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one new token against caches of odd lengths" > $L/racecheck-decode-mha.log 2>&1
el "racecheck decode odd lengths (cluster, 8 warps) rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-decode-mha.log | tail -1)"
pack
left=$(( LIMIT - 20 - ($(date +%s) - T0) ))
if [ $left -gt 150 ]; then run_compare gpt12 --preset gpt12 --steps 20 --warmup 5; else el "no time for compare_train ($left s left)"; fi
pack
el done
