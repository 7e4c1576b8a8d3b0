#!/usr/bin/env bash
# Tests of scripts/setup.sh (ctest label `cpu`, a second): the script runs as it is, with
# stand-ins for the tools it calls (dpkg-query, apt-get, sudo, nvcc, nvidia-smi, cmake) that
# print what the real ones print, noise included, and record how they were called.
#   bash setup_test.sh SOURCE_DIR WORK
set -uo pipefail
SRC=$1 WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK/bin" || exit 1
export STUB_LOG="$WORK/calls.log"

stub() { printf '#!/usr/bin/env bash\n%s\n' "$2" >"$WORK/bin/$1" && chmod +x "$WORK/bin/$1"; }
stub dpkg-query 'for p in ${STUB_MISSING:-}; do [ "${!#}" = "$p" ] && exit 1; done; printf "install ok installed"'
stub apt-get 'echo "apt-get $*" >>"$STUB_LOG"
echo "Selecting previously unselected package fortunes."; echo "Unpacking fortunes ..."
echo "Setting up fortunes ..."'
stub sudo '"$@"'
stub nvcc 'exit 0'
stub nvidia-smi '[ -n "${STUB_GPU:-}" ] || { echo "NVIDIA-SMI has failed" >&2; exit 9; }
case "$*" in *compute_cap*) echo "9.0" ;; *) echo "GPU 0: NVIDIA H100 80GB HBM3" ;; esac'
stub cmake 'case "$*" in
*--build*)
  echo "[1/3] Building CXX object CMakeFiles/flashgrad.dir/core/philox.cpp.o"
  echo "ptxas info    : Used 128 registers, 16384 bytes smem"
  echo "[2/3] Building CUDA object CMakeFiles/flashgrad.dir/kernels/attention/a.cu.o"
  echo "/src/tensor/x.cpp:3:7: warning: unused variable '"'"'y'"'"' [-Wunused-variable]"
  if [ -n "${STUB_BUILD_FAIL:-}" ]; then
    echo "FAILED: CMakeFiles/flashgrad.dir/nn/gpt.cpp.o"
    echo "/src/nn/gpt.cpp:12:1: error: expected ; before }"
    echo "ninja: build stopped: subcommand failed."
    exit 1
  fi
  echo "[3/3] Linking CXX executable flashgrad" ;;
*)
  echo "cmake $*" >>"$STUB_LOG"
  echo "-- The CXX compiler identification is GNU 13.2.0"; echo "-- Configuring done" ;;
esac'

fail() { echo "FAIL: $*" >&2; echo "--- output" >&2; cat "$WORK/out" >&2; exit 1; }
# setup [VAR=value...]: runs scripts/setup.sh with the stand-ins first on PATH; its stdout and
# stderr go to $WORK/out, its exit code to $rc.
setup() {
  : >"$STUB_LOG"
  # The settings the test runner itself may carry (scripts/test.sh exports FLASHGRAD_CUDA=ON
  # wherever nvcc is) are cleared, so each case sees only what it sets.
  env -u FLASHGRAD_CUDA -u CUDA_ARCH -u FLASHGRAD_TEST_PACKAGES PATH="$WORK/bin:$PATH" \
    BUILD_DIR="$WORK/build" "$@" bash "$SRC/scripts/setup.sh" \
    >"$WORK/out" 2>&1
  rc=$?
}
quiet() {
  ! grep -qiE "ptxas|warning|Selecting|Unpacking|Setting up|-- Configuring|compiler identification" \
    "$WORK/out" || fail "$1: tool output shown"
  [ "$(wc -l <"$WORK/out")" -le 8 ] || fail "$1: more than 8 lines"
}

# No GPU (nvidia-smi fails) but a CUDA toolkit: a CPU-only build, said so, quietly.
setup
[ "$rc" -eq 0 ] || fail "no GPU: exit $rc"
grep -q -- "-DFLASHGRAD_CUDA=OFF" "$STUB_LOG" || fail "no GPU: CUDA not turned off"
grep -q "no GPU found: building the CPU path only (FLASHGRAD_CUDA=ON builds" "$WORK/out" \
  || fail "no GPU: not said"
grep -q "building 100% (3/3)" "$WORK/out" || fail "no progress shown"
quiet "no GPU"
grep -q "ptxas info" "$WORK/build/setup-build.log" || fail "the build's output was not logged"

# A missing package is installed without apt's chatter.
setup STUB_MISSING=fortunes
[ "$rc" -eq 0 ] || fail "install: exit $rc"
grep -q "apt-get install .*fortunes" "$STUB_LOG" || fail "fortunes not installed"
grep -q "installing fortunes" "$WORK/out" || fail "install: not said"
quiet "install"

# A GPU: the CUDA kernels, for its architecture (sm_90a on Hopper).
setup STUB_GPU=1
[ "$rc" -eq 0 ] || fail "GPU: exit $rc"
grep -q -- "-DFLASHGRAD_CUDA=ON .*-DCMAKE_CUDA_ARCHITECTURES=90a" "$STUB_LOG" || fail "GPU: not a 90a CUDA build"
quiet "GPU"

# Asked for explicitly, the kernels are built without a GPU too.
setup FLASHGRAD_CUDA=ON
grep -q -- "-DFLASHGRAD_CUDA=ON" "$STUB_LOG" || fail "FLASHGRAD_CUDA=ON not honoured"

# A failed build shows its errors and where the whole log is, and fails.
setup STUB_BUILD_FAIL=1
[ "$rc" -ne 0 ] || fail "a failed build exited 0"
grep -q "error: expected ; before }" "$WORK/out" || fail "the build's error is not shown"
grep -q "setup-build.log" "$WORK/out" || fail "the log is not named"
echo "ok: scripts/setup.sh"
