// The SIMT attention kernels (no tensor cores): the reference CUDA path, for every dtype (f64
// computes in double, the others in float) and D in {32, 64, 96, 128}, and D = 256 except in
// f64. This file holds their configuration and the steps the forward, dK/dV and dQ kernels
// share.
//
// Layout: a block has kWarps warps and works on square tiles of kTile queries x kTile keys.
// Each warp owns R = kTile / kWarps rows of its tile (queries in the forward and the dQ
// kernel, keys in the dK/dV kernel); a lane owns columns lane, lane + 32, ... of a score tile
// and dims lane, lane + 32, ... of a row accumulator. Operand tiles are converted to the
// accumulation type in shared memory; the tiles read across lanes at a fixed d get rows padded
// to D + 1, so that the 32 lanes hit 32 banks.
#pragma once
#include <cstdint>
#include <type_traits>

#include "core/cuda_reduce.cuh"
#include "core/philox.h"
#include "kernels/attention/common/backward.cuh"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/mask.cuh"
#include "kernels/attention/common/numeric.cuh"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {
namespace simt {

// fp32 accumulation: 64 x 64 tiles, 8 warps (8 rows per warp); at D = 256, 32 x 32 (the dK/dV
// kernel's four [64][256] fp32 tiles would need 280 KB of shared memory). fp64 doubles every
// register and shared-memory word, so its tiles are 32 x 32 (and D = 256 does not fit). The
// tile divides the block-mask tile of 64, so a masked-out block-mask entry skips whole tiles.
template <typename T, int D> struct Config {
  using A = typename Acc<T>::type;
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTile = std::is_same_v<T, double> || D >= 256 ? 32 : 64;
  static_assert(kBlockMaskTileQ % kTile == 0 && kBlockMaskTileK % kTile == 0,
                "kernel tiles must divide the block-mask tile");
  static_assert(kTile % kWarps == 0 && kTile % 32 == 0 && D % 32 == 0, "tile shape");
  static constexpr int R = kTile / kWarps;  // rows per warp
  static constexpr int C = kTile / 32;      // score columns per lane
  static constexpr int DL = D / 32;         // accumulator dims per lane
  static constexpr int kPad = D + 1;        // row stride of a tile read across lanes
  // Shared memory, in bytes:
  //   forward  sQ [kTile][D], sK [kTile][kPad], sV [kTile][D], sP [kTile][kTile]
  //   dK/dV    sK, sV [kTile][D], sQ, sdO [kTile][kPad], sS [kTile][kTile], LSE, D_i [kTile]
  //   dQ       sQ, sdO [kTile][D], sK, sV [kTile][kPad], sS [kTile][kTile]
  static constexpr size_t kForwardSmem =
      sizeof(A) * size_t(kTile * D + kTile * kPad + kTile * D + kTile * kTile);
  static constexpr size_t kDkdvSmem =
      sizeof(A) * size_t(2 * kTile * D + 2 * kTile * kPad + kTile * kTile + 2 * kTile);
  static constexpr size_t kDqSmem =
      sizeof(A) * size_t(2 * kTile * D + 2 * kTile * kPad + kTile * kTile);
};

// The softmax scale and dropout constants of one call, from the scalars of AttentionParams
// (built from the values, not from a reference to the parameters, which costs registers).
template <typename A> struct Constants {
  A scale;
  bool dropout;
  uint32_t threshold;  // keep iff the Philox word >= threshold
  A keep_scale;        // 1 / (1 - p)
  // Whether element (b, h, i, j) survives dropout (attention_dropout_keep).
  FG_ATTN_DEV bool keep(const AttentionParams& p, int64_t b, int64_t h, int64_t i,
                        int64_t j) const {
    return attention_dropout_keep(p.seed, p.offset, uint32_t(p.batch_index_base + b), uint32_t(h), uint32_t(p.Hq),
                                  uint32_t(i), uint32_t(j), threshold);
  }
};
template <typename A>
FG_ATTN_DEV Constants<A> constants(double softmax_scale, double dropout_p) {
  return Constants<A>{A(softmax_scale), dropout_p > 0.0, attention_dropout_threshold(dropout_p),
                      A(attention_dropout_keep_scale(dropout_p))};
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

// The tiles [x0, x0 + kTile) for x0 = start, start + kTile, ... below `end` (n the length of
// the axis) that vis_of(x0, x1) does not call empty, one after the other: load(x0) between two
// barriers, then body(x0, x1, vis). The visibility is block-uniform, so the skip and the
// barriers stay in step.
template <int kTile, typename VisOf, typename Load, typename Body>
FG_ATTN_DEV void for_each_visible_tile(int64_t start, int64_t end, int64_t n, VisOf vis_of,
                                       Load load, Body body) {
  for (int64_t x0 = start; x0 < end; x0 += kTile) {
    const int64_t x1 = min64(x0 + kTile, n);
    const TileVisibility vis = vis_of(x0, x1);
    if (vis == TileVisibility::empty) continue;
    __syncthreads();  // the previous tile is no longer read
    load(x0);
    __syncthreads();
    body(x0, x1, vis);
  }
}

// s[r][c] = <X_r, Y_c> for the warp's rows r of X (row stride D, read as a broadcast) and the
// lane's columns c of Y (rows lane + 32 c, row stride kYS).
template <int R, int C, int D, int kYS, typename A>
FG_ATTN_DEV void tile_products(A (&s)[R][C], const A* X, const A* Y, int warp, int lane) {
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < C; ++c) s[r][c] = 0;
#pragma unroll 4
  for (int d = 0; d < D; ++d) {
    A y[C];
#pragma unroll
    for (int c = 0; c < C; ++c) y[c] = Y[(lane + 32 * c) * kYS + d];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const A x = X[(warp * R + r) * D + d];  // broadcast
#pragma unroll
      for (int c = 0; c < C; ++c) s[r][c] += x * y[c];
    }
  }
}

// The same for two pairs at once (the backward's S and dP): s = X Y^T and s2 = X2 Y2^T.
template <int R, int C, int D, int kYS, typename A>
FG_ATTN_DEV void tile_products2(A (&s)[R][C], A (&s2)[R][C], const A* X, const A* Y, const A* X2,
                                const A* Y2, int warp, int lane) {
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int c = 0; c < C; ++c) s[r][c] = s2[r][c] = 0;
#pragma unroll 2
  for (int d = 0; d < D; ++d) {
    A y[C], y2[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {
      y[c] = Y[(lane + 32 * c) * kYS + d];
      y2[c] = Y2[(lane + 32 * c) * kYS + d];
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const A x = X[(warp * R + r) * D + d];  // broadcast
      const A x2 = X2[(warp * R + r) * D + d];
#pragma unroll
      for (int c = 0; c < C; ++c) {
        s[r][c] += x * y[c];
        s2[r][c] += x2 * y2[c];
      }
    }
  }
}

// acc[r][t] += sum_c W[warp row r][c] Z[c][lane + 32 t] over the kN columns of W (row stride
// kN; this warp's rows, read as a broadcast) and the kN rows of Z (row stride kZS).
template <int R, int DL, int kN, int kZS, typename A>
FG_ATTN_DEV void accumulate_rows(A (&acc)[R][DL], const A* W, const A* Z, int warp, int lane) {
#pragma unroll 2
  for (int c = 0; c < kN; ++c) {
    A z[DL];
#pragma unroll
    for (int t = 0; t < DL; ++t) z[t] = Z[c * kZS + lane + 32 * t];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const A w = W[(warp * R + r) * kN + c];  // broadcast
#pragma unroll
      for (int t = 0; t < DL; ++t) acc[r][t] += w * z[t];
    }
  }
}

// This warp's rows row0 + r (below n) of acc, the lane's dims lane + 32 t, into out (row stride
// `stride`) as T; with acc2, the same rows of acc2 into out2 in the same loop.
template <int R, int DL, typename T, typename A>
FG_ATTN_DEV void store_rows(int64_t row0, int64_t n, int lane, T* out, int64_t stride,
                            const A (&acc)[R][DL], T* out2 = nullptr, int64_t stride2 = 0,
                            const A (*acc2)[DL] = nullptr) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = row0 + r;
    if (i >= n) continue;
#pragma unroll
    for (int t = 0; t < DL; ++t) {
      store_acc(out + i * stride + lane + 32 * t, acc[r][t]);
      if (acc2) store_acc(out2 + i * stride2 + lane + 32 * t, acc2[r][t]);
    }
  }
}

}  // namespace simt
}  // namespace attn
}  // namespace fg
