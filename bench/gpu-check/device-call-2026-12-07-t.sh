#!/bin/bash
# Device call t of 2026-12-07 (seventh session; run after r and s): head dims 96 and 256 on the
# mma.sync kernels (forward at 96 and 256, backward at 96; rows padded to 128 in shared memory
# at 96), which no GPU has run yet. (1) test_attention_kernels' sweep of every usable kernel
# against the fp64 reference at D 32-256, and the 96/256 race case: plain, then under
# memcheck, racecheck and synccheck side by side; (2) `flashgrad gradcheck attention --device
# cuda` (its rows at 96 and 256 now take the new kernels); (3) `bench attention` at D 96 and 256
# beside SDPA (flash and cuDNN), and the SIMT kernels of before on the same grid
# (FLASHGRAD_ATTENTION_SIMT=1), so the speedup is measured in one call. (4) The decode
# kernel's shorter fixed part (first stages issued before the query load; merge_parts
# unrolled) against the tree before it, `.baseline` (git archive 607c2ab | tar -x -C .baseline),
# built here beside the main build: `bench decode-attention` alternately, two rounds each;
# test_attention_decode under both decode forms (it now covers D 256 in bf16/f16) and memcheck.
#   LIMIT=480 bash bench/gpu-check/device-call-2026-12-07-t.sh   (repository root; carry .deps, data, .baseline)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-480}
(cmake -S .baseline -B .baseline/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
   -DCMAKE_PREFIX_PATH="$PWD/.deps/usr" -DFLASHGRAD_TESTS=OFF > $L/base.log 2>&1 &&
 cmake --build .baseline/build -j 4 --target flashgrad >> $L/base.log 2>&1; echo "baseline build rc $?" >> $L/base.log) &
build
DIMS="attention cuda race check: head dims 96 and 256"
timeout 90 build/tests/test_attention_kernels "attention cuda: every kernel of the tables against the reference" \
  > $L/sweep.log 2>&1
el "sweep rc $? $(tail -3 $L/sweep.log | grep -E 'passed|failed')"
grep -E "FAILED|REQUIRE|CHECK\(|with expansion" $L/sweep.log | head -10 | tee -a $FINAL/summary.txt
timeout 60 build/tests/test_attention_kernels "$DIMS" > $L/dims.log 2>&1
el "race case D 96/256 rc $? $(tail -3 $L/dims.log | grep -E 'passed|failed') | kernels: $(grep -oE 'cuda-(forward|backward):[a-z0-9]+' $L/dims.log | sort -u | tr '\n' ' ')"
pack
sanitize_side_by_side "$DIMS" -dims
timeout 90 build/flashgrad gradcheck attention --device cuda > $L/gradcheck.log 2>&1
el "gradcheck attention cuda rc $? $(grep -ciE 'fail' $L/gradcheck.log) lines with 'fail'"
grep -E "^ *(96|256) |D=(96|256)| 96 | 256 " $L/gradcheck.log | head -16 | tee -a $FINAL/summary.txt
pack
B="bench attention --dtype bf16 --head-dim 96,256 --causal both --min-len 1024 --max-len 8192 --reps 5 --seconds 0.2"
timeout 70 build/flashgrad $B --json $L/dims.json > $L/bench-dims.log 2>&1
el "bench attention D 96/256 rc $?"
grep -E "^ +(96|256) " $L/bench-dims.log | tee -a $FINAL/summary.txt
FLASHGRAD_ATTENTION_SIMT=1 timeout 90 build/flashgrad $B --no-check --json $L/dims-simt.json > $L/bench-dims-simt.log 2>&1
el "bench attention D 96/256, SIMT, rc $?"
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]
a = json.load(open(f"{L}/dims.json"))["results"]; s = json.load(open(f"{L}/dims-simt.json"))["results"]
print("D causal N | fwd TFLOP/s: mma | simt | ratio || bwd TFLOP/s: default | simt | ratio")
for x, y in zip(a, s):
    print(f"{x['D']} {x['causal']} {x['N']} | {x['fwd_tflops']:.1f} | {y['fwd_tflops']:.1f} | {x['fwd_tflops'] / y['fwd_tflops']:.2f}"
          f" || {x['bwd_tflops']:.1f} | {y['bwd_tflops']:.1f} | {x['bwd_tflops'] / y['bwd_tflops']:.2f}")
PY
pack
timeout 110 python3 bench/compare_sdpa.py --flashgrad-json $L/dims.json --seconds 0.2 --reps 5 \
  --out-json $L/dims-sdpa.json --out-md $L/dims-sdpa.md > $L/dims-sdpa.log 2>&1; el "compare_sdpa rc $?"
grep -E "flash \|" $L/dims-sdpa.md | head -20 | tee -a $FINAL/summary.txt
pack
for form in cluster split; do
  FLASHGRAD_DECODE_KERNEL=$form timeout 60 build/tests/test_attention_decode "[cuda]" > $L/decode-$form.log 2>&1
  el "test_attention_decode [cuda], $form form, rc $? $(tail -3 $L/decode-$form.log | grep -E 'passed|failed')"
done
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/test_attention_decode \
  "attention decode: one new token against caches of odd lengths" > $L/memcheck-decode.log 2>&1
el "memcheck decode odd lengths (D 32-256): $(grep -E 'ERROR SUMMARY' $L/memcheck-decode.log | tail -1)"
pack
wait; el "$(tail -1 $L/base.log)"
for round in 1 2; do
  for tree in new base; do
    exe=build/flashgrad; [ $tree = base ] && exe=.baseline/build/flashgrad
    timeout 25 $exe bench decode-attention --json $L/dattn-mha-$tree-$round.json > $L/dattn-mha-$tree-$round.log 2>&1
    timeout 25 $exe bench decode-attention --batch 8 --heads 32 --kv-heads 8 --head-dim 128 \
      --lens 4096,8192,32768 --json $L/dattn-gqa-$tree-$round.json > $L/dattn-gqa-$tree-$round.log 2>&1
    el "decode-attention $tree round $round rc $?"
  done
done
python3 - $L <<'PY' | tee -a $FINAL/summary.txt
import json, sys
L = sys.argv[1]
def rows(name):
    r = json.load(open(f"{L}/{name}.json"))
    return r["results"]
for shape in ("mha", "gqa"):
    print(f"{shape}: L | graphed us new r1, r2 | base r1, r2 | new/base (mean)")
    n1, n2, b1, b2 = (rows(f"dattn-{shape}-{t}-{k}") for t, k in (("new", 1), ("new", 2), ("base", 1), ("base", 2)))
    for a, c, x, y in zip(n1, n2, b1, b2):
        g = lambda e: e["graph_us"]
        print(f"  {a['cache_len']} | {g(a):.2f}, {g(c):.2f} | {g(x):.2f}, {g(y):.2f} | {(g(a) + g(c)) / (g(x) + g(y)):.3f}")
PY
pack
el done
