#!/usr/bin/env bash
# A/B of the CUDA attention kernels: the build in ./build (this tree) against the build of a
# baseline tree, each timed by bench/ab/attention_ab.cu compiled against its own headers and
# library, in alternating runs on the same GPU. Prints, per grid point, the median over runs of
# each side and new/base; exits 1 when any point is slower than the limit.
#
#   bash bench/ab/run.sh BASE_TREE [ROUNDS] [LIMIT]    # e.g. .baseline 3 1.03
#
# BASE_TREE is a source tree (e.g. `git archive <commit> | tar -x -C .baseline`); it is built in
# BASE_TREE/build when that has no libflashgrad.a. ./build must hold this tree's CUDA build.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${1:?usage: bench/ab/run.sh BASE_TREE [ROUNDS] [LIMIT]}
ROUNDS=${2:-3}
LIMIT=${3:-1.03}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
ARCH=${CUDA_ARCH:-90a}
PREFIX=""
[ -d .deps/usr ] && PREFIX="-DCMAKE_PREFIX_PATH=$PWD/.deps/usr"
if [ ! -f "$BASE/build/libflashgrad.a" ]; then
  cmake -S "$BASE" -B "$BASE/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHGRAD_TESTS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=$ARCH $PREFIX > "$OUT/ab-base-build.log" 2>&1
  cmake --build "$BASE/build" -j "$(nproc)" --target flashgrad >> "$OUT/ab-base-build.log" 2>&1 \
    || { tail -30 "$OUT/ab-base-build.log"; exit 1; }
fi
[ -f build/libflashgrad.a ] || { echo "ab: no build/libflashgrad.a; build this tree first"; exit 1; }
compile() {  # tree, output
  nvcc -std=c++17 -O2 -arch=sm_$ARCH -I"$1" -DFLASHGRAD_WITH_CUDA bench/ab/attention_ab.cu \
    "$1/build/libflashgrad.a" -lcublas -lcublasLt -lcurand -o "$2"
}
compile "$BASE" "$OUT/ab-base" &
compile "$PWD" "$OUT/ab-new" &
wait
for r in $(seq 1 "$ROUNDS"); do
  "$OUT/ab-base" > "$OUT/ab-base-$r.csv"
  "$OUT/ab-new" > "$OUT/ab-new-$r.csv"
done
python3 - "$OUT" "$ROUNDS" "$LIMIT" <<'PY'
import csv, statistics, sys
out, rounds, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def load(side):
    runs = [list(csv.DictReader(open(f"{out}/ab-{side}-{r}.csv"))) for r in range(1, rounds + 1)]
    return {(row["D"], row["causal"], row["N"]): {k: statistics.median(float(run[i][k]) for run in runs)
            for k in ("fwd_ms", "bwd_ms")} for i, row in enumerate(runs[0])}
base, new = load("base"), load("new")
worst = 0.0
print("| D | causal | N | fwd base ms | fwd new ms | new/base | bwd base ms | bwd new ms | new/base |")
print("|---|---|---|---|---|---|---|---|---|")
for key in base:
    b, n = base[key], new[key]
    rf, rb = n["fwd_ms"] / b["fwd_ms"], n["bwd_ms"] / b["bwd_ms"]
    worst = max(worst, rf, rb)
    print(f"| {key[0]} | {'yes' if key[1] == '1' else 'no'} | {key[2]} | {b['fwd_ms']:.4f} | {n['fwd_ms']:.4f} | "
          f"{rf:.3f} | {b['bwd_ms']:.4f} | {n['bwd_ms']:.4f} | {rb:.3f} |")
print(f"\nworst new/base: {worst:.3f} (limit {limit})")
sys.exit(0 if worst <= limit else 1)
PY
