// CUDA FlashAttention kernels (FlashAttention-2 style, SIMT: no tensor cores yet) and their
// launchers, templated on the storage type T, the head dim D and the tile sizes.
//
// Included only by the files in kernels/attention/instantiations/, each of which instantiates
// run_attention_forward<T, D> or run_attention_backward<T, D> for one (dtype, head dim), so the
// many variants compile in parallel. attention_cuda.cu holds the entry points and dispatch.
//
// Forward (attention_forward_kernel): one block per (query tile, head, batch). Each warp owns
// kBlockQ / kWarps query rows; a lane owns key columns lane, lane + 32, ... of the score tile
// and dims lane, lane + 32, ... of the output accumulator. K and V tiles are streamed through
// shared memory; the running max m and (per-lane partial) running sum l stay in registers.
// Only O and LSE are written.
//
// Backward, in three or four launches:
//   1. attention_bwd_dot_kernel: D_i = rowsum(dO * O) into the workspace (one warp per row).
//   2. attention_bwd_dkdv_kernel: one block per (key tile, kv head, batch), looping over the
//      query heads of the GQA group and over query tiles; each warp owns key rows, dK and dV
//      stay in registers. In the default mode it also forms the block's dQ contribution
//      dS^T K and adds it into an fp32 (fp64 for f64) accumulator with atomicAdd, because
//      several key tiles contribute to each dQ row; the order of those adds varies from run
//      to run, so dQ is not bit-reproducible.
//   3a. attention_bwd_dq_convert_kernel: accumulator -> dQ in the storage type, or, when
//      params.deterministic,
//   3b. attention_bwd_dq_kernel: one block per (query tile, head, batch) recomputes P and dS
//      for its rows and sums dQ in registers in a fixed order: no atomics, bit-reproducible,
//      at the price of computing S and dP twice.
//
// Masking: a tile pair whose TileVisibility is empty (causal or block mask) is skipped before
// anything is loaded; in a partial tile every element is tested with attention_allowed; rows
// and columns past Nq / Nk are zero-filled in shared memory and masked. Dropout regenerates
// each element's keep bit with attention_dropout_keep, so the CPU and CUDA masks are identical.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/attention/params.h"
#include "core/half.h"
#include "core/philox.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/attention/attention.h"
#include "core/cuda_check.h"
#include "core/error.h"

#define FG_ATTN_DEV __device__ __forceinline__

namespace fg {
namespace attn {

// ---------------------------------------------------------------------------------------------
// Types, conversions and small helpers

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T> FG_ATTN_DEV typename Acc<T>::type load_acc(const T* ptr) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return *ptr;
  } else if constexpr (std::is_same_v<T, float16>) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(ptr->bits));
#else
    return float(*ptr);
#endif
  } else {
    return float(*ptr);  // bf16 -> f32 is a shift
  }
}

template <typename T, typename A> FG_ATTN_DEV void store_acc(T* ptr, A x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    *ptr = x;
  } else if constexpr (std::is_same_v<T, float16>) {
#if defined(__CUDA_ARCH__)
    ptr->bits = __half_as_ushort(__float2half_rn(x));
#else
    *ptr = T(float(x));
#endif
  } else {
#if defined(__CUDA_ARCH__)
    ptr->bits = __bfloat16_as_ushort(__float2bfloat16_rn(x));
#else
    *ptr = T(float(x));
#endif
  }
}

FG_ATTN_DEV float exp_acc(float x) { return expf(x); }
FG_ATTN_DEV double exp_acc(double x) { return exp(x); }
FG_ATTN_DEV float log_acc(float x) { return logf(x); }
FG_ATTN_DEV double log_acc(double x) { return log(x); }
template <typename A> FG_ATTN_DEV A neg_inf() { return -A(INFINITY); }

template <typename A> FG_ATTN_DEV A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
template <typename A> FG_ATTN_DEV A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

FG_ATTN_DEV int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
FG_ATTN_DEV int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// The end (exclusive) of the keys that query rows below q1 can see under causal masking.
FG_ATTN_DEV int64_t causal_key_end(const AttentionParams& p, int64_t q1) {
  if (!p.causal) return p.Nk;
  return max64(0, min64(p.Nk, q1 + p.Nk - p.Nq));
}

// Copies rows [r0, r0 + kRows) of one head of a strided [*, N, H, D] tensor into shared memory
// with row stride kStride (in elements of A), converting to A; rows at or past n are zeroed so
// that masked-out columns never multiply garbage. Consecutive threads read consecutive dims.
template <typename T, typename A, int D, int kRows, int kStride, int kThreads>
FG_ATTN_DEV void load_rows(A* dst, const T* src, int64_t seq_stride, int64_t r0, int64_t n) {
  for (int e = int(threadIdx.x); e < kRows * D; e += kThreads) {
    const int r = e / D, d = e % D;
    dst[r * kStride + d] = r0 + r < n ? load_acc(src + (r0 + r) * seq_stride + d) : A(0);
  }
}

// Whether element (i, j) takes part: in bounds and, in a partial tile, allowed by the mask.
FG_ATTN_DEV bool element_visible(const AttentionParams& p, TileVisibility vis, int64_t h, int64_t i,
                            int64_t j) {
  if (i >= p.Nq || j >= p.Nk) return false;
  return vis == TileVisibility::full || attention_allowed(p, h, i, j);
}

// Shared-memory sizes of the kernels, in bytes (host and device agree on the layout).
template <typename A, int D, int kBlockQ, int kBlockK> constexpr size_t forward_smem_bytes() {
  // sQ [Bq][D], sK [Bk][D+1], sV [Bk][D], sP [Bq][Bk]
  return sizeof(A) * size_t(kBlockQ * D + kBlockK * (D + 1) + kBlockK * D + kBlockQ * kBlockK);
}
template <typename A, int D, int kBlockK, int kBlockQ> constexpr size_t bwd_dkdv_smem_bytes() {
  // sK [Bk][D], sV [Bk][D], sQ [Bq][D+1], sdO [Bq][D+1], sS [Bk][Bq], sLse [Bq], sDi [Bq]
  return sizeof(A) * size_t(2 * kBlockK * D + 2 * kBlockQ * (D + 1) + kBlockK * kBlockQ +
                            2 * kBlockQ);
}
template <typename A, int D, int kBlockQ, int kBlockK> constexpr size_t bwd_dq_smem_bytes() {
  // sQ [Bq][D], sdO [Bq][D], sK [Bk][D+1], sV [Bk][D+1], sS [Bq][Bk]
  return sizeof(A) * size_t(2 * kBlockQ * D + 2 * kBlockK * (D + 1) + kBlockQ * kBlockK);
}


// ---------------------------------------------------------------------------------------------
// Tile configurations. fp32 accumulation: 64 x 64 tiles, 8 warps (8 rows per warp). fp64
// doubles every register and shared-memory word, so its tiles are 32 x 32. All tile sizes
// divide the block-mask tile of 64, so a masked-out block-mask entry skips whole tiles.

template <typename T, int D> struct Config {
  static constexpr bool kDouble = std::is_same_v<T, double>;
  static constexpr int kWarps = 8;
  static constexpr int kFwdBlockQ = kDouble ? 32 : 64;
  static constexpr int kFwdBlockK = kDouble ? 32 : 64;
  static constexpr int kBwdBlockK = kDouble ? 32 : 64;  // key rows per dK/dV block
  static constexpr int kBwdBlockQ = kDouble ? 32 : 64;  // query tile streamed through it
  static constexpr int kDqBlockQ = kDouble ? 32 : 64;   // deterministic dQ kernel
  static constexpr int kDqBlockK = kDouble ? 32 : 64;
  static_assert(kBlockMaskTileQ % kFwdBlockQ == 0 && kBlockMaskTileK % kFwdBlockK == 0 &&
                    kBlockMaskTileK % kBwdBlockK == 0 && kBlockMaskTileQ % kBwdBlockQ == 0 &&
                    kBlockMaskTileQ % kDqBlockQ == 0 && kBlockMaskTileK % kDqBlockK == 0,
                "kernel tiles must divide the block-mask tile");
};

// Workspace layout of the backward (sizes match flash_attention_backward_workspace_bytes).
inline size_t workspace_pad(size_t n) { return (n + 255) / 256 * 256; }

// ---------------------------------------------------------------------------------------------
// Launchers

template <typename Kernel> void set_smem_limit(Kernel kernel, size_t bytes) {
  // Above 48 KB a kernel must opt in to the larger dynamic shared memory carve-out.
  if (bytes > 48 * 1024)
    FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(bytes)));
}

inline void check_grid(const AttentionParams& p, const char* who) {
  FG_CHECK(p.B <= 65535 && p.Hq <= 65535, who, ": B=", p.B, " and Hq=", p.Hq,
           " must each be at most 65535 (they are grid dimensions); split the batch");
}

}  // namespace attn
}  // namespace fg
