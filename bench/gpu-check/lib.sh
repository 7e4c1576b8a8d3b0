# What every device-call script of bench/gpu-check shares (source it from the repository root):
# $FINAL (the call's $OUT) gets summary.txt and logs.tgz; logs go to $L; el prints a line with
# the seconds since the start; pack tars the logs (files beyond the first few do not come back
# one by one); build configures and builds the given targets (all when none) for sm_90a;
# run_compare NAME ARGS... runs bench/compare_train.py beside PyTorch (eager, torch.compile);
# compare_all_configs runs it on small, gpt12 and (time allowing, by $LIMIT) gpt24 at batch 32;
# ctest_cuda LIMIT runs the `cuda` tests; memcheck LIMIT TEST... runs compute-sanitizer's
# memcheck on the `[cuda]` cases of each test binary (LIMIT: seconds, per test binary);
# sanitize_side_by_side and ncu_backward_times (below) run the three sanitizers on one attention
# case and Nsight Compute's kernel times of both backwards.
set -o pipefail
FINAL=$OUT; L=$FINAL/l; mkdir -p "$L"
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$FINAL/summary.txt"; }
pack() { tar czf "$FINAL/logs.tgz" -C "$FINAL" l; }
build() {
  local targets=""
  for t in "$@"; do targets="$targets --target $t"; done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$FINAL/summary.txt"
  cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DCMAKE_PREFIX_PATH="$PWD/.deps/usr" > "$L/build.log" 2>&1 &&
    cmake --build build -j 16 $targets >> "$L/build.log" 2>&1
  el "build rc $?"
  grep -E "error|FAILED" "$L/build.log" | head -10 | tee -a "$FINAL/summary.txt"
}
run_compare() {  # name, then compare_train.py's arguments
  local name=$1; shift
  timeout 170 python3 bench/compare_train.py --device cuda --dtype bf16 --modes eager,compile \
    --flashgrad build/flashgrad --out-json "$L/train-$name.json" "$@" > "$L/train-$name.log" 2>&1
  el "compare_train $name rc $?"; grep -v -i warn "$L/train-$name.log" | tail -7 | tee -a "$FINAL/summary.txt"
  pack
}
compare_all_configs() {  # the issue's three configs beside PyTorch; gpt24 only if time is left
  run_compare small --preset small --steps 20 --warmup 5
  run_compare gpt12 --preset gpt12 --steps 20 --warmup 5
  local left=$(( LIMIT - 10 - ($(date +%s) - T0) ))
  if [ $left -gt 120 ]; then run_compare gpt24-b32 --preset gpt24 --batch 32 --steps 8 --warmup 3
  else el "no time for gpt24 ($left s left)"; fi
}
ctest_cuda() {
  timeout "$1" ctest --test-dir build -L cuda -j 4 --output-on-failure > "$L/ctest.log" 2>&1
  el "ctest -L cuda rc $? $(grep -E 'tests passed|tests failed' "$L/ctest.log")"
  grep -E "Failed|\*\*\*" "$L/ctest.log" | head -20 | tee -a "$FINAL/summary.txt"
}
memcheck() {
  local limit=$1 t; shift
  for t in "$@"; do
    timeout "$limit" compute-sanitizer --tool memcheck --error-exitcode 9 build/tests/$t "[cuda]" > "$L/mc-$t.log" 2>&1
    el "memcheck $t rc $? $(grep -E 'ERROR SUMMARY' "$L/mc-$t.log" | tail -1)"
  done
}
# sanitize_side_by_side SPEC TAG [VAR=VALUE ...]: compute-sanitizer's memcheck, synccheck and
# racecheck side by side on test_attention_kernels' case SPEC (with the given environment), logs
# $L/<tool>TAG.log, a line each: the tool's summary, the warp-specialised backward's lines, pass.
sanitize_side_by_side() {
  local spec=$1 tag=$2 tool; shift 2
  for tool in memcheck synccheck racecheck; do
    env "$@" timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_attention_kernels \
      "$spec" > "$L/$tool$tag.log" 2>&1 &
  done
  wait
  for tool in memcheck synccheck racecheck; do
    el "$tool$tag ($*): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$L/$tool$tag.log" | tail -1) | $(grep -c 'cuda-backward:tma' "$L/$tool$tag.log") TMA-backward lines | $(tail -2 "$L/$tool$tag.log" | grep -E 'passed|failed')"
  done
  pack
}
# ncu_backward_times: Nsight Compute's time of each kernel of the attention backward, the wgmma
# one (FLASHGRAD_ATTENTION_TMA_BWD=0) and the warp-specialised one (=1), at gpt12's shape (D 64,
# causal, N 1024) and at D 128, N 8192; while the calling script's left() gives 40 s or more.
ncu_backward_times() {
  local shape v
  for shape in "64 on 1024" "128 off 8192"; do
    set -- $shape
    for v in 0 1; do
      [ $(left) -gt 40 ] || return 0
      FLASHGRAD_ATTENTION_TMA_BWD=$v timeout 40 ncu --metrics gpu__time_duration.sum -k 'regex:bwd_|dkdv' --launch-count 6 \
        build/flashgrad bench attention --dtype bf16 --head-dim $1 --causal $2 --min-len $3 --max-len $3 \
        --reps 1 --seconds 0.02 --no-check > "$L/ncu-times-$1-$2-$3-tma$v.txt" 2>&1
      el "ncu times D $1 causal $2 N $3 TMA_BWD=$v rc $?"
      grep -E "bwd_|dkdv|gpu__time_duration" "$L/ncu-times-$1-$2-$3-tma$v.txt" | head -8 | tee -a "$FINAL/summary.txt"
    done
  done
  pack
}
