// Warp-level products of the tensor-core kernels on swizzled shared tiles (common/tiles.cuh)
// with ldmatrix and mma.sync m16n8k16, and the re-packing of accumulators into A fragments.
//
// Score tiles are accumulators s[mi][nt][4]: kMT m16 row tiles x kNT n8 column tiles (the
// layout of common/mask.cuh). Per-lane ldmatrix byte offsets at head-dim chunk 0/1 of a tile
// of kRowBytes rows (rows 8-aligned plus (lane & 7), so the swizzle term is chunk ^ (lane & 7)):
//   lane_offset_a(lane, row0)  A operand: rows row0 + (lane & 15), chunk lane >> 4
//   lane_offset_b(lane)        B operand (n = rows): rows (lane & 7) + 8 (lane >> 4),
//                              chunk (lane >> 3) & 1
//   lane_offset_bt(lane)       B operand through .trans (k = rows), or A through .trans of a
//                              stored transpose: rows (lane & 7) + 8 ((lane >> 3) & 1), chunk lane
//                              >> 4
// Head-dim chunk pair ks (16 elements) is then one XOR of (ks << 5) away.
#pragma once
#include <cstdint>

#include "kernels/attention/common/ptx.cuh"

namespace fg {
namespace attn {

template <uint32_t kRowBytes> FG_ATTN_DEV uint32_t lane_offset_a(int lane, int row0) {
  return uint32_t((row0 + (lane & 15)) * kRowBytes + (((lane >> 4) ^ (lane & 7)) << 4));
}
template <uint32_t kRowBytes> FG_ATTN_DEV uint32_t lane_offset_b(int lane) {
  return uint32_t(((lane & 7) + ((lane >> 4) << 3)) * kRowBytes +
                  ((((lane >> 3) & 1) ^ (lane & 7)) << 4));
}
template <uint32_t kRowBytes> FG_ATTN_DEV uint32_t lane_offset_bt(int lane) {
  return uint32_t(((lane & 7) + (((lane >> 3) & 1) << 3)) * kRowBytes +
                  (((lane >> 4) ^ (lane & 7)) << 4));
}

// The accumulators of n8 column tiles 2kk and 2kk+1 are exactly the A fragment of a 16x16
// block: (row g, cols 2t..), (row g+8, cols 2t..), (row g, cols 8+2t..), (row g+8, cols 8+2t..).
template <typename T, int kNT>
FG_ATTN_DEV void pack_a(const float (&x)[kNT][4], int kk, uint32_t (&a)[4]) {
  a[0] = pack2<T>(x[2 * kk][0], x[2 * kk][1]);
  a[1] = pack2<T>(x[2 * kk][2], x[2 * kk][3]);
  a[2] = pack2<T>(x[2 * kk + 1][0], x[2 * kk + 1][1]);
  a[3] = pack2<T>(x[2 * kk + 1][2], x[2 * kk + 1][3]);
}

// The rows row0 + g + 8 hr (hr = 0, 1; those below n) of the accumulators x, dims 8 dt + 2t and
// 8 dt + 2t + 1, into out (row stride `stride`) as T; with x2, the same rows of x2 into out2
// in the same loop.
template <typename T, int kDT>
FG_ATTN_DEV void store_fragment_rows(int64_t row0, int64_t n, int g, int t, T* out, int64_t stride,
                                     const float (&x)[kDT][4], T* out2 = nullptr,
                                     int64_t stride2 = 0, const float (*x2)[4] = nullptr) {
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = row0 + g + 8 * hr;
    if (i >= n) continue;
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
      *reinterpret_cast<uint32_t*>(out + i * stride + dt * 8 + 2 * t) =
          pack2<T>(x[dt][2 * hr], x[dt][2 * hr + 1]);
      if (x2)
        *reinterpret_cast<uint32_t*>(out2 + i * stride2 + dt * 8 + 2 * t) =
            pack2<T>(x2[dt][2 * hr], x2[dt][2 * hr + 1]);
    }
  }
}

template <int N> FG_ATTN_DEV void zero(float (&x)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) x[i][e] = 0.f;
}

// s = A B^T over D: A the warp's kMT * 16 rows (at aLane: the tile plus lane_offset_a), B the
// kNT * 8 rows of a tile (at bLane: the tile plus lane_offset_b).
template <typename T, int kMT, int kNT, int D, uint32_t kRowBytes>
FG_ATTN_DEV void mma_scores(float (&s)[kMT][kNT][4], uint32_t aLane, uint32_t bLane) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi) zero(s[mi]);
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t a[kMT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
      ldmatrix_x4(a[mi], (aLane ^ uint32_t(ks << 5)) + mi * 16 * kRowBytes);
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      uint32_t b[4];  // rows np*16 + [0, 8) then [8, 16); dims ks*16 + [0, 8), [8, 16)
      ldmatrix_x4(b, (bLane ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        mma_16816<T>(s[mi][2 * np], a[mi], b[0], b[1]);
        mma_16816<T>(s[mi][2 * np + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

// s = A B^T and s2 = A2 B2^T over D for a warp's 16 rows (the backward's S and dP):
// load_a(ks, a, a2) gives the A fragments of head-dim step ks; B and B2 are the kNT * 8 rows of
// tiles at bLane, b2Lane (lane_offset_b). s and s2 start at zero.
template <typename T, int kNT, int D, uint32_t kRowBytes, typename LoadA>
FG_ATTN_DEV void mma_score_pair(float (&s)[kNT][4], float (&s2)[kNT][4], LoadA load_a,
                                uint32_t bLane, uint32_t b2Lane) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    uint32_t a[4], a2[4];
    load_a(ks, a, a2);
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      uint32_t b[4], b2[4];
      ldmatrix_x4(b, (bLane ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
      ldmatrix_x4(b2, (b2Lane ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
      mma_16816<T>(s[2 * np], a, b[0], b[1]);
      mma_16816<T>(s[2 * np + 1], a, b[2], b[3]);
      mma_16816<T>(s2[2 * np], a2, b2[0], b2[1]);
      mma_16816<T>(s2[2 * np + 1], a2, b2[2], b2[3]);
    }
  }
}

// acc += P V over the kNT * 8 keys of a tile: P re-packed from the score accumulators, V (k =
// keys) through ldmatrix.trans at vLane (the tile plus lane_offset_bt).
template <typename T, int kMT, int kNT, int kDT, uint32_t kRowBytes>
FG_ATTN_DEV void mma_pv(float (&acc)[kMT][kDT][4], const float (&s)[kMT][kNT][4], uint32_t vLane) {
#pragma unroll
  for (int kk = 0; kk < kNT / 2; ++kk) {
    uint32_t pa[kMT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi) pack_a<T>(s[mi], kk, pa[mi]);
#pragma unroll
    for (int dp = 0; dp < kDT / 2; ++dp) {
      uint32_t bv[4];  // keys kk*16 + [0, 8), [8, 16) for dims dp*16 + [0, 8), then [8, 16)
      ldmatrix_x4_trans(bv, (vLane ^ uint32_t(dp << 5)) + kk * 16 * kRowBytes);
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        mma_16816<T>(acc[mi][2 * dp], pa[mi], bv[0], bv[1]);
        mma_16816<T>(acc[mi][2 * dp + 1], pa[mi], bv[2], bv[3]);
      }
    }
  }
}

}  // namespace attn
}  // namespace fg
