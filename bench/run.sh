#!/usr/bin/env bash
# Benchmarks for one device call: flashgrad's attention kernels against PyTorch SDPA (flash and
# cuDNN backends, and the memory-efficient one for fp32), then `bench ops` (elementwise, fused
# and reduction kernels against a copy; the GEMM epilogues) and `bench train` at gpt12. Builds nothing: expects the
# `flashgrad` binary of a CUDA build in ./build (or $FLASHGRAD_BIN). Called by
# scripts/gpu-check.sh when it exists.
#
#   bash bench/run.sh                 # full grid: D 64/128, causal on/off, N 512..16384, bf16;
#                                     # D 96/256 at N 1024..8192
#   BENCH_QUICK=1 bash bench/run.sh   # N 1024..8192 only
#
# Writes $OUT/bench.json (flashgrad + SDPA numbers and ratios) and $OUT/bench.md (the table,
# ready for bench/RESULTS.md). Exit status 1 if flashgrad's check against the fp64 reference
# failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
BIN=${FLASHGRAD_BIN:-build/flashgrad}
SECONDS_PER=${BENCH_SECONDS:-0.5}
TMP=$(mktemp -d)
status=0
[ -x "$BIN" ] || { echo "bench/run.sh: $BIN not found; build first (cmake --build build)"; exit 1; }

LEN="--min-len 512 --max-len 16384"
[ -n "${BENCH_QUICK:-}" ] && LEN="--min-len 1024 --max-len 8192"

echo "== flashgrad bench attention (bf16) =="
"$BIN" bench attention --dtype bf16 --head-dim 64,128 --causal both $LEN \
  --seconds "$SECONDS_PER" --reps 20 --json "$TMP/bf16.json" || status=1
echo "== flashgrad bench attention (bf16, D 96 and 256) =="
"$BIN" bench attention --dtype bf16 --head-dim 96,256 --causal both --min-len 1024 --max-len 8192 \
  --seconds "$SECONDS_PER" --reps 20 --json "$TMP/bf16-dims.json" || status=1
echo "== flashgrad bench attention (fp32, D64 N4096) =="
"$BIN" bench attention --dtype fp32 --head-dim 64 --causal both --min-len 4096 --max-len 4096 \
  --seconds "$SECONDS_PER" --reps 10 --json "$TMP/fp32.json" || status=1

JSONS=()
for f in "$TMP/bf16.json" "$TMP/bf16-dims.json" "$TMP/fp32.json"; do [ -s "$f" ] && JSONS+=(--flashgrad-json "$f"); done
if [ ${#JSONS[@]} -gt 0 ] && python3 -c "import torch" 2>/dev/null; then
  echo "== PyTorch SDPA on the same grid =="
  python3 bench/compare_sdpa.py "${JSONS[@]}" --seconds "$SECONDS_PER" --reps 20 \
    --out-json "$OUT/bench.json" --out-md "$OUT/bench.md" || status=1
else
  echo "bench/run.sh: no PyTorch (or no flashgrad results): SDPA comparison skipped"
  cp "$TMP/bf16.json" "$OUT/bench.json" 2>/dev/null
fi
rm -rf "$TMP"
echo "== flashgrad bench ops =="
"$BIN" bench ops || status=1
echo "== flashgrad bench train (gpt12) =="
"$BIN" bench train --preset gpt12 --steps 10 --warmup 3 || status=1
exit $status
