// Offsets of strided operands for elementwise kernels, on the host and in CUDA kernels.
//
// An elementwise op visits the output's elements in row-major order; for each linear index
// the indexer gives every operand's element offset from its own strides. A broadcast operand
// has stride 0 in the broadcast dims, so broadcasting and non-contiguous views need no copies.
#pragma once
#include <cstdint>

#include "core/half.h"

namespace fg {

constexpr int kMaxDims = 8;

template <int NARGS>
struct StridedIndexer {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[NARGS][kMaxDims] = {};
  bool contiguous = false;  // all operands contiguous with the same shape: offset == linear

  FG_HD void offsets(int64_t linear, int64_t* out) const {
    if (contiguous) {
      for (int a = 0; a < NARGS; ++a) out[a] = linear;
      return;
    }
    for (int a = 0; a < NARGS; ++a) out[a] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t i = linear % sizes[d];
      linear /= sizes[d];
      for (int a = 0; a < NARGS; ++a) out[a] += i * strides[a][d];
    }
  }
};

}  // namespace fg
