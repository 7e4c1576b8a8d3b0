#!/bin/bash
# Device call (2026-12-07, call c, short): the device time left allowed no build, so the
# binaries come built on the CPU machine from commit 82cc28b (sm_90a, Release), carried as
# prebuilt/bin.tar.xz (flashgrad, tests/test_generate). The decode step as a CUDA graph: its
# tests, `bench decode` with and without the graph beside bench/compare_sample.py's CUDA-graph
# loop in PyTorch, then the split-KV kernel's bandwidth, plain and prefetching.
#   bash bench/gpu-check/device-call-2026-12-07-c.sh   (repository root; carry .deps, prebuilt)
source bench/gpu-check/lib.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $FINAL/summary.txt
mkdir -p build && python3 -c "import tarfile; tarfile.open('prebuilt/bin.tar.xz').extractall('build')"
el "unpacked rc $?"
timeout 60 build/tests/test_generate "[cuda]" > $L/test_generate.log 2>&1
el "test_generate [cuda] rc $? $(grep -E 'All tests passed|test cases:' $L/test_generate.log | tail -1)"
grep -B3 -A12 "FAILED" $L/test_generate.log | head -30 | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench decode --device cuda --json $L/decode.json 2>&1 | tee -a $FINAL/summary.txt
timeout 60 build/flashgrad bench decode --device cuda --no-cuda-graph --json $L/decode-nograph.json 2>&1 | tee -a $FINAL/summary.txt
el "bench decode done"; pack
timeout 110 python3 bench/compare_sample.py --flashgrad-json $L/decode.json --flashgrad-json $L/decode-nograph.json \
  --modes graph --span-buckets 1 --max-seconds 8 --out-json $L/sample.json --out-md $L/sample.md > $L/compare.log 2>&1
el "compare_sample rc $?"; cat $L/sample.md | tee -a $FINAL/summary.txt; pack
timeout 25 build/flashgrad bench decode-attention 2>&1 | tee -a $FINAL/summary.txt
FLASHGRAD_DECODE_PREFETCH=1 timeout 25 build/flashgrad bench decode-attention 2>&1 | tee -a $FINAL/summary.txt
pack
el done
