#!/usr/bin/env bash
# Measures the power of the cpu test suite: applies each mutant below (one small, plausible
# bug) to a scratch copy of the committed tree, rebuilds (CPU-only, ccache when present), runs
# `ctest -L cpu` (less the fuzz smoke), and expects a failure. A mutant that passes every test has "survived": the
# suite cannot see that bug. Prints one line per mutant and exits 1 if any survived or no
# longer applies (its code moved: update the table).
#
#   bash scripts/mutants.sh [NAME_REGEX]      # about a minute per mutant on 2 cores
set -uo pipefail
cd "$(dirname "$0")/.."
ONLY=${1:-.}
# The fuzz smoke test is left out: it checks the checkpoint reader against crashes (which no
# mutant here introduces) and would add minutes to every mutant.
SKIP=fuzz_checkpoint_smoke
SCRATCH=${MUTANTS_DIR:-/tmp/flashgrad-mutants}
rm -rf "$SCRATCH"
git worktree prune
git worktree add -q --detach "$SCRATCH" HEAD || exit 1
trap 'git worktree remove --force "$SCRATCH" >/dev/null 2>&1' EXIT
LAUNCHER=""
command -v ccache >/dev/null && LAUNCHER="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
cmake -S "$SCRATCH" -B "$SCRATCH/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHGRAD_CUDA=OFF \
  $LAUNCHER ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH} > /dev/null || exit 1
cmake --build "$SCRATCH/build" -j "$(nproc)" > /dev/null || { echo "mutants: the unmutated tree does not build"; exit 1; }
ctest --test-dir "$SCRATCH/build" -L cpu -E "$SKIP" -j "$(nproc)" > /dev/null || { echo "mutants: the unmutated tree fails its tests"; exit 1; }

# name | file | text to replace (must occur exactly once) | replacement
MUTANTS=$(cat <<'TABLE'
dropout-ignores-batch|core/philox.h|philox4x32_10(j >> 4, i, b * num_heads + h,|philox4x32_10(j >> 4, i, h,
node-reuses-offset|autograd/attention.cpp|default_generator().next_offset()|default_generator().offset()
philox-nine-rounds|core/philox.h|for (int round = 0; round < 10; ++round)|for (int round = 0; round < 9; ++round)
adamw-no-bias-correction|kernels/optim.h|adamw_div(adamw_sqrt(v), a.bias2_sqrt)|adamw_sqrt(v)
checkpoint-hash-unchecked|train/checkpoint.cpp|if (version >= 2)|if (version >= 3)
causal-offset-flipped|kernels/attention/params.h|{ return i + p.Nk - p.Nq; }|{ return i + p.Nq - p.Nk; }
lse-in-input-dtype|kernels/attention/cpu/flash.cpp|lse[q0 + r] = m[r] + std::log(l[r]);|lse[q0 + r] = A(float(T(m[r] + std::log(l[r]))));
dropout-unscaled|kernels/attention/cpu/flash.cpp|keep_scale(A(attention_dropout_keep_scale(p.dropout_p))) {}|keep_scale(A(1)) {}
generic-dropout-low-halves-only|core/philox.h|return (r.x[(k >> 1) & 3u] >> (16u * (k & 1u))) & 0xFFFFu;|return r.x[(k >> 1) & 3u] & 0xFFFFu;
generic-dropout-scale-unrounded|kernels/cpu/nn.cpp|const A scale = A(dropout_keep_scale(p));|const A scale = A(1.0 / (1.0 - p));
kv-cache-positions-from-zero|nn/gpt.cpp|pos[size_t(r * T + t)] = L + t;|pos[size_t(r * T + t)] = t;
varlen-dropout-ignores-sequence|kernels/attention/cpu/flash.cpp|uint32_t(p.batch_index_base + b)|uint32_t(b)
TABLE
)

survived=0
while IFS='|' read -r name file from to; do
  [ -z "$name" ] && continue
  echo "$name" | grep -qE "$ONLY" || continue
  n=$(grep -cF -- "$from" "$SCRATCH/$file")
  if [ "$n" != 1 ]; then
    echo "STALE     $name: '$from' occurs $n times in $file"
    survived=1
    continue
  fi
  python3 - "$SCRATCH/$file" "$from" "$to" <<'PY'
import sys
path, a, b = sys.argv[1:]
s = open(path).read()
open(path, "w").write(s.replace(a, b, 1))
PY
  start=$(date +%s)
  if ! cmake --build "$SCRATCH/build" -j "$(nproc)" > "$SCRATCH/build.log" 2>&1; then
    result="KILLED    $name (does not compile)"
  elif ctest --test-dir "$SCRATCH/build" -L cpu -E "$SKIP" -j "$(nproc)" > "$SCRATCH/ctest.log" 2>&1; then
    result="SURVIVED  $name: every cpu test passed with $file mutated"
    survived=1
  else
    failed=$(grep -E "^\s+[0-9]+ - " "$SCRATCH/ctest.log" | awk '{print $3}' | tr '\n' ' ')
    result="KILLED    $name by: $failed"
  fi
  echo "$result ($(( $(date +%s) - start )) s)"
  git -C "$SCRATCH" checkout -- "$file"
done <<< "$MUTANTS"
exit $survived
