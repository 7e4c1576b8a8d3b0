#!/bin/bash
# Device call (session 3, call 4, short): the split-KV kernel with four keys per step at one
# row (fewer registers); its tests, its bandwidth, and `bench decode` twice for the spread.
#   bash bench/gpu-check/device-call-2026-11-28-f.sh     (repository root, .deps carried)
source bench/gpu-check/lib.sh
build flashgrad_cli test_attention_decode test_generate
build/tests/test_attention_decode "[cuda]" > $L/t1.log 2>&1; el "test_attention_decode cuda rc $? $(tail -2 $L/t1.log | head -1)"
build/tests/test_generate "[cuda]" > $L/t2.log 2>&1; el "test_generate cuda rc $? $(tail -2 $L/t2.log | head -1)"
timeout 30 build/flashgrad bench decode-attention 2>&1 | tee -a $FINAL/summary.txt
timeout 30 build/flashgrad bench decode-attention --heads 32 --kv-heads 8 --head-dim 128 2>&1 | tee -a $FINAL/summary.txt
timeout 30 build/flashgrad bench decode-attention --batch 8 --heads 32 --kv-heads 8 --head-dim 128 --lens 1024,4096,8192,32768 2>&1 | tee -a $FINAL/summary.txt
for i in 1 2; do timeout 60 build/flashgrad bench decode --device cuda 2>&1 | tee -a $FINAL/summary.txt; done
el done
