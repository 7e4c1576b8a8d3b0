#!/usr/bin/env bash
# Installs what flashgrad needs from the distribution (when missing), then configures and
# builds it in ./build. CUDA is used when the toolkit is found (nvcc); otherwise the build is
# CPU-only. Safe to run again: it only installs what is missing and rebuilds what changed.
#
#   bash scripts/setup.sh                 # Release build in ./build
#   FLASHGRAD_CUDA=OFF bash scripts/setup.sh   # CPU-only build
#   CUDA_ARCH=90a bash scripts/setup.sh   # CUDA architectures (default: the GPUs found, else 90a)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="build-essential cmake ninja-build catch2 libcli11-dev nlohmann-json3-dev libopenblas-dev fortunes"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "flashgrad setup: installing$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

# The CUDA toolkit's usual home, when it is not on PATH already.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
CUDA_OPT=${FLASHGRAD_CUDA:-ON}
if ! command -v nvcc >/dev/null 2>&1; then CUDA_OPT=OFF; fi

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
if [ "$CUDA_OPT" = ON ] && [ -z "$CUDA_ARCH" ]; then
  CUDA_ARCH=$(detect_cuda_arch)
  echo "flashgrad setup: CUDA architectures $CUDA_ARCH (set CUDA_ARCH to choose)"
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DFLASHGRAD_CUDA="$CUDA_OPT" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90a}" \
  ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH} >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "flashgrad setup: built $BUILD_DIR/flashgrad (CUDA $CUDA_OPT)"
