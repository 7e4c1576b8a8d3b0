#!/bin/bash
# Device call (2026-12-07, call a): the decode step as a CUDA graph (per-thread default stream,
# graph memory pools, seqused_k in the split-KV kernel, kv_cache_write). Its tests first, then
# `bench decode` with and without the graph beside bench/compare_sample.py (PyTorch CUDA graph
# and torch.compile), then the whole `cuda` label and memcheck while time is left.
#   bash bench/gpu-check/device-call-2026-12-07-a.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-600}  # the call's time limit, seconds: the later steps fit themselves into it
build
for t in test_graph test_attention_ops test_generate test_attention_decode; do
  timeout 120 build/tests/$t "[cuda]" > $L/$t.log 2>&1
  el "$t [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/$t.log | tail -1)"
  grep -B3 -A12 "FAILED" $L/$t.log | head -40 | tee -a $FINAL/summary.txt
done
pack
timeout 90 build/flashgrad bench decode --device cuda --json $L/decode.json 2>&1 | tee -a $FINAL/summary.txt
timeout 90 build/flashgrad bench decode --device cuda --no-cuda-graph --json $L/decode-nograph.json 2>&1 | tee -a $FINAL/summary.txt
el "bench decode done"
timeout 40 build/flashgrad bench decode-attention 2>&1 | tee -a $FINAL/summary.txt
# The prefetching split kernel: its tests, then the same bandwidth table, MHA and GQA.
FLASHGRAD_DECODE_PREFETCH=1 timeout 60 build/tests/test_attention_decode "[cuda]" > $L/decode-prefetch-test.log 2>&1
el "test_attention_decode [cuda] with prefetch rc $? $(tail -2 $L/decode-prefetch-test.log | head -1)"
FLASHGRAD_DECODE_PREFETCH=1 timeout 40 build/flashgrad bench decode-attention 2>&1 | tee -a $FINAL/summary.txt
for pf in 0 1; do FLASHGRAD_DECODE_PREFETCH=$pf timeout 40 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 4096,8192,32768 2>&1 | tee -a $FINAL/summary.txt; done
timeout 150 python3 bench/compare_sample.py --flashgrad-json $L/decode.json --flashgrad-json $L/decode-nograph.json \
  --modes graph,compile --span-buckets 1 --max-seconds 10 \
  --out-json $L/sample.json --out-md $L/sample.md > $L/compare.log 2>&1; el "compare_sample rc $?"
cat $L/sample.md | tee -a $FINAL/summary.txt; tail -3 $L/compare.log | tee -a $FINAL/summary.txt
pack
left=$(( LIMIT - 60 - ($(date +%s) - T0) ))
[ $left -gt 60 ] && ctest_cuda $(( left - 50 ))
left=$(( LIMIT - 40 - ($(date +%s) - T0) ))
[ $left -gt 30 ] && memcheck $(( left / 3 )) test_generate test_attention_ops
# test_graph without the case that makes a capture fail on purpose (its API error is the point).
timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/test_graph "[cuda]~*waits for the GPU*" > $L/mc-test_graph.log 2>&1
el "memcheck test_graph (but the failing capture) rc $? $(grep -E 'ERROR SUMMARY' $L/mc-test_graph.log | tail -1)"
pack
# Nsight Compute on the split-KV kernel at 8k and 32k keys (B 1, 12 heads, D 64): DRAM
# throughput, occupancy, stall reasons (what limits its bandwidth).
left=$(( LIMIT - 15 - ($(date +%s) - T0) ))
for n in 8192 32768; do
  [ $left -gt 25 ] && timeout $(( left / 2 )) ncu --set full -k regex:split_kernel --launch-skip 3 --launch-count 1 \
    build/flashgrad bench decode-attention --lens $n --seconds 0.05 > $L/ncu-$n.txt 2>&1 && el "ncu $n done"
  left=$(( LIMIT - 15 - ($(date +%s) - T0) ))
done
pack
el done
