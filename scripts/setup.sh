#!/usr/bin/env bash
# Installs what flashgrad needs from the distribution (when missing), then configures and
# builds it in ./build. Safe to run again: it only installs what is missing and rebuilds what
# changed.
#
# It is quiet: a line per step and a progress line while building; what the tools print
# (apt, CMake, compiler and ptxas notes) goes to $BUILD_DIR/setup-*.log, and when a step
# fails its errors are shown with the log's name.
#
# CUDA: the kernels are built when the CUDA toolkit (nvcc) is found and a GPU is present;
# without a GPU the build is CPU-only (compiling the kernels takes minutes, and nothing could
# run them).
#
#   bash scripts/setup.sh                      # Release build in ./build
#   FLASHGRAD_CUDA=OFF bash scripts/setup.sh   # CPU-only build
#   FLASHGRAD_CUDA=ON bash scripts/setup.sh    # the CUDA kernels even without a GPU
#   CUDA_ARCH=90a bash scripts/setup.sh        # CUDA architectures (default: the GPUs found)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
mkdir -p "$BUILD_DIR"
rm -f "$BUILD_DIR"/setup-*.log
say() { echo "flashgrad setup: $*"; }

# show_failure LOG WHAT: the errors of a failed step (or the end of its log), and where the
# whole log is.
show_failure() {
  say "$2 failed; its errors (the whole output is in $1):" >&2
  if grep -E -m 40 "error|FAILED|Error|E: " "$1" >&2; then :; else tail -n 40 "$1" >&2; fi
  exit 1
}
# quietly LOG WHAT COMMAND...: runs COMMAND with its output added to LOG.
quietly() {
  local log=$1 what=$2
  shift 2
  "$@" >>"$log" 2>&1 || show_failure "$log" "$what"
}

PACKAGES="build-essential cmake ninja-build catch2 libcli11-dev nlohmann-json3-dev libopenblas-dev fortunes"
# FLASHGRAD_TEST_PACKAGES=1 (scripts/test.sh sets it) adds what only the tests need: clang,
# whose libFuzzer the checkpoint fuzz test uses (tests/fuzz).
[ "${FLASHGRAD_TEST_PACKAGES:-0}" = 1 ] && PACKAGES="$PACKAGES clang"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
updated=0
install_missing() {
  local missing="" p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  say "installing$missing"
  if [ $updated -eq 0 ]; then
    quietly "$BUILD_DIR/setup-apt.log" "apt-get update" $SUDO apt-get update -qq
    updated=1
  fi
  quietly "$BUILD_DIR/setup-apt.log" "installing the packages" \
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}
install_missing $PACKAGES
if [ "${FLASHGRAD_TEST_PACKAGES:-0}" = 1 ]; then
  # libFuzzer ships in the compiler-rt package of clang's own major version.
  clang_major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -1)
  [ -n "$clang_major" ] && install_missing "libclang-rt-$clang_major-dev"
fi

# The CUDA toolkit's usual home, when it is not on PATH already.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
has_gpu() { nvidia-smi -L >/dev/null 2>&1; }
if [ -n "${FLASHGRAD_CUDA:-}" ]; then
  CUDA_OPT=$FLASHGRAD_CUDA
elif ! command -v nvcc >/dev/null 2>&1; then
  CUDA_OPT=OFF
  say "no CUDA toolkit (nvcc) found: building the CPU path only"
elif ! has_gpu; then
  CUDA_OPT=OFF
  say "no GPU found: building the CPU path only (FLASHGRAD_CUDA=ON builds the CUDA kernels anyway)"
else
  CUDA_OPT=ON
fi
if [ "$CUDA_OPT" = ON ] && ! command -v nvcc >/dev/null 2>&1; then
  say "FLASHGRAD_CUDA=ON, but no CUDA toolkit (nvcc) is on PATH or in /usr/local/cuda" >&2
  exit 1
fi

# The CUDA architectures to build for, when CUDA_ARCH is not given: those of the GPUs present
# (sm_90a on Hopper, which enables the wgmma kernels; a card's own architecture otherwise, so
# that another NVIDIA card gets a working build), or sm_90a when there is no GPU to ask.
detect_cuda_arch() {
  local caps
  caps=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u)
  [ -z "$caps" ] && { echo 90a; return; }
  local archs=""
  for c in $caps; do
    case "$c" in
      90) archs="$archs;90a" ;;
      [0-9]*) archs="$archs;$c" ;;
    esac
  done
  archs=${archs#;}
  echo "${archs:-90a}"
}
CUDA_ARCH=${CUDA_ARCH:-}
if [ "$CUDA_OPT" = ON ]; then
  [ -z "$CUDA_ARCH" ] && CUDA_ARCH=$(detect_cuda_arch)
  say "building the CUDA kernels for $CUDA_ARCH (set CUDA_ARCH to choose; this takes minutes)"
fi

say "configuring $BUILD_DIR (CMake, Release)"
quietly "$BUILD_DIR/setup-configure.log" "configuring" \
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFLASHGRAD_CUDA="$CUDA_OPT" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" \
  ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH}

# The build, with Ninja's "[done/total]" turned into a progress line: rewritten in place on a
# terminal, one line per tenth otherwise.
LOG="$BUILD_DIR/setup-build.log"
progress() {
  local line done total pct shown=-1 any=0
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$LOG"
    [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]] || continue
    done=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]} any=1
    [ "$done" -gt 0 ] || continue
    pct=$((100 * done / total))
    if [ -t 1 ]; then
      printf '\rflashgrad setup: building %3d%% (%d/%d)' "$pct" "$done" "$total"
    elif [ $((pct / 10)) -gt "$shown" ]; then
      shown=$((pct / 10))
      say "building $pct% ($done/$total)"
    fi
  done
  if [ -t 1 ] && [ "$any" = 1 ]; then printf '\n'; fi
  return 0
}
set +e
NINJA_STATUS="[%f/%t] " cmake --build "$BUILD_DIR" -j "$(nproc)" 2>&1 | progress
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || show_failure "$LOG" "building"
say "built $BUILD_DIR/flashgrad (CUDA $CUDA_OPT; the build's output is in $LOG)"
