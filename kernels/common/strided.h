// Offsets of strided operands for elementwise kernels, on the host and in CUDA kernels.
//
// An elementwise op visits the output's elements in row-major order; for each linear index
// the indexer gives every operand's element offset from its own strides. A broadcast operand
// has stride 0 in the broadcast dims, so broadcasting and non-contiguous views need no copies.
#pragma once
#include <algorithm>
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

// For the CPU loops: calls run(off, step, len) for each stretch of [begin, end) that lies along
// the innermost dimension, with off[a] the element offset of operand a at the stretch's start
// and step[a] its stride along that dimension (all 1 when every operand is contiguous: one
// stretch). The div/mod of offsets() is paid once per stretch instead of once per element, and
// the loop inside a stretch is a plain strided loop the compiler can vectorise.
template <int NARGS, typename F>
inline void for_each_run(const StridedIndexer<NARGS>& idx, int64_t begin, int64_t end, F&& run) {
  int64_t off[NARGS], step[NARGS];
  if (idx.contiguous || idx.ndim == 0) {
    for (int a = 0; a < NARGS; ++a) off[a] = idx.ndim == 0 ? 0 : begin, step[a] = 1;
    run(off, step, idx.ndim == 0 ? std::min<int64_t>(end - begin, 1) : end - begin);
    return;
  }
  const int64_t inner = idx.sizes[idx.ndim - 1];
  for (int a = 0; a < NARGS; ++a) step[a] = idx.strides[a][idx.ndim - 1];
  for (int64_t i = begin; i < end;) {
    idx.offsets(i, off);
    const int64_t len = std::min(end - i, inner - i % inner);
    run(off, step, len);
    i += len;
  }
}

}  // namespace fg
