#!/usr/bin/env bash
# Sets up and builds flashgrad (scripts/setup.sh), then runs the tests: the `cpu` label always,
# and the `cuda` label too when a GPU is present.
#
# Unlike a plain set-up, the tests build the CUDA kernels whenever the CUDA toolkit is there,
# GPU or not, so that a change that breaks their compilation fails here too
# (FLASHGRAD_CUDA=OFF bash scripts/test.sh skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FLASHGRAD_CUDA:-}" ] && { command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  export FLASHGRAD_CUDA=ON
fi
FLASHGRAD_TEST_PACKAGES=1 bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
LABEL=cpu
if [ "${FLASHGRAD_TEST_CUDA:-auto}" != "0" ] && command -v nvidia-smi >/dev/null 2>&1 \
   && nvidia-smi -L >/dev/null 2>&1; then
  LABEL="cpu|cuda"
fi
echo "flashgrad tests: label $LABEL"
ctest --test-dir "$BUILD_DIR" -L "$LABEL" --output-on-failure -j "$(nproc)"
