// Masking inside a tile, in the three layouts of the kernels: per element (SIMT), on a warp's
// mma score tile with rows = queries (forwards, deterministic dQ) and with rows = keys (the
// transposed tile of the tensor-core dK/dV kernels). Whole tiles are skipped before this, by
// tile_visibility (params.h); what is left is the causal diagonal and the sequence ends.
#pragma once
#include <cstdint>

#include "kernels/attention/common/ptx.cuh"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {

// Whether element (i, j) takes part: in bounds and, in a partial tile, allowed by the mask.
FG_ATTN_DEV bool element_visible(const AttentionParams& p, TileVisibility vis, int64_t h,
                                 int64_t i, int64_t j) {
  if (i >= p.Nq || j >= p.Nk) return false;
  return vis == TileVisibility::full || attention_allowed(p, h, i, j);
}

// A warp's score tile in the mma accumulator layout: kMT m16 row tiles x kNT n8 column tiles;
// element e of s[mi][nt] is query row wr0 + 16 mi + g (+8 for e >= 2), key k0 + 8 nt + 2t (+1
// for odd e). Masked elements become -inf. The warp's rows and the key tile each lie inside one
// 64 x 64 block-mask tile (the kernels static_assert it), and an empty pair was skipped, so
// what is left is causal and Nk: row i keeps keys j < key_end(p, i + 1).
template <int kMT, int kNT>
FG_ATTN_DEV void mask_scores(float (&s)[kMT][kNT][4], const AttentionParams& p, int64_t wr0,
                             int64_t k0, int g, int t) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int64_t i = wr0 + mi * 16 + g + hr * 8;
      int64_t lim = p.Nk;
      if (p.causal && causal_last_key(p, i + 1) < lim) lim = causal_last_key(p, i + 1);
      lim -= k0;  // relative to the tile, clamp into [0, 8 kNT]
      const int rel = lim < 0 ? 0 : (lim > 8 * kNT ? 8 * kNT : int(lim));
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c)
          if (nt * 8 + 2 * t + c >= rel) s[mi][nt][2 * hr + c] = -INFINITY;
    }
}

// The transposed tile of a warp of the dK/dV kernels: rows are its 16 keys kw0 + g (+8 for
// e >= 2), columns kNT n8 tiles of the query tile at q0: element e of s[nt] is query
// q0 + 8 nt + 2t (+1 for odd e). Key j keeps the queries i < Nq with i >= causal_first_row(j).
template <int kNT>
FG_ATTN_DEV void mask_scores_transposed(float (&s)[kNT][4], const AttentionParams& p, int64_t kw0,
                                        int64_t q0, int g, int t) {
  constexpr int64_t kCols = 8 * kNT;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t j = kw0 + g + 8 * hr;
    int64_t lo = p.causal ? causal_first_row(p, j) - q0 : 0;
    int64_t hi = j < p.Nk ? p.Nq - q0 : 0;
    lo = lo < 0 ? 0 : (lo > kCols ? kCols : lo);
    hi = hi < 0 ? 0 : (hi > kCols ? kCols : hi);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = nt * 8 + 2 * t + c;
        if (col < lo || col >= hi) s[nt][2 * hr + c] = -INFINITY;
      }
  }
}

}  // namespace attn
}  // namespace fg
