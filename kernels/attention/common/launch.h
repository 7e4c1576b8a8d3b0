// Host-side helpers of the attention launchers: grid limits, the width of shared-memory tile
// rows, the shared-memory opt-in and the layout of the backward workspace.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {

// B and Hq (or Hkv) are grid dimensions y and z.
inline void check_grid(const AttentionParams& p, const char* who) {
  FG_CHECK(p.B <= 65535 && p.Hq <= 65535, who, ": B=", p.B, " and Hq=", p.Hq,
           " must each be at most 65535 (they are grid dimensions); split the batch");
}

// The width in elements of a 16-bit tile's shared-memory rows for head dim D (common/tiles.cuh):
// D itself at 64, 128 and 256; D = 96 rows are padded to 128 (the swizzle XORs a chunk index
// with r % 8, which stays inside a row only when the row's chunk count is a multiple of 8).
// The padding is never written nor read: the fragment loops run over D.
constexpr int tile_dim(int D) { return D <= 64 ? 64 : D <= 128 ? 128 : D; }

// Above 48 KB a kernel must opt in to the larger dynamic shared memory carve-out.
template <typename Kernel> void set_smem_limit(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(bytes)));
}

// The backward workspace (params.h, attention_workspace_pad) in the accumulation type A.
template <typename A> struct BackwardWorkspace {
  A* Di;
  A* dq_accum;
  explicit BackwardWorkspace(const AttentionParams& p)
      : Di(static_cast<A*>(p.workspace)),
        dq_accum(
            reinterpret_cast<A*>(static_cast<unsigned char*>(p.workspace) +
                                 attention_workspace_pad(size_t(p.B * p.Hq * p.Nq) * sizeof(A)))) {}
  // Whether the accumulator takes 16-byte accesses (vectors, bulk reductions): as aligned as
  // the workspace the caller gave.
  bool dq_accum_aligned16() const { return reinterpret_cast<uintptr_t>(dq_accum) % 16 == 0; }
};

}  // namespace attn
}  // namespace fg
