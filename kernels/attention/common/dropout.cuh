// Dropout on the mma score tiles of the tensor-core kernels, bit for bit the rule of
// attention_dropout_keep (core/philox.h): element (b, h, i, j) is kept iff word j % 4 of the
// Philox call on counter (j / 4, i, b Hq + h, offset) reaches the threshold. Both forms draw
// each call once per warp and hand its words to the lanes that hold the elements by shuffles.
#pragma once
#include <cstdint>

#include "core/philox.h"
#include "kernels/attention/common/ptx.cuh"
#include "kernels/attention/common/softmax.cuh"

namespace fg {
namespace attn {

// Row form (rows = queries; the layout of mask_scores). Columns 4u..4u+3 of a row share one
// Philox call. Threads t and t^1 hold the same four columns (2 each) of rows g and g+8: the
// even one draws row g, the odd one row g+8, and each hands the other the two words it needs.
// Multiplies s by Z / (1 - p), after the row sums took it undropped.
template <int kMT, int kNT>
FG_ATTN_DEV void apply_dropout(float (&s)[kMT][kNT][4], int64_t wr0, int64_t k0, int g, int t,
                               uint32_t ph, uint32_t offset, const SoftmaxDropout& sd) {
  const bool odd = (t & 1) != 0;
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const uint32_t i = uint32_t(wr0 + mi * 16 + g + (odd ? 8 : 0));
      const uint32_t grp = uint32_t((k0 + nt * 8) >> 2) + uint32_t(t >> 1);
      const Philox4 r = philox4x32_10(grp, i, ph, offset, sd.pk0, sd.pk1);
      const uint32_t send0 = odd ? r.x[0] : r.x[2], send1 = odd ? r.x[1] : r.x[3];
      const uint32_t recv0 = __shfl_xor_sync(0xffffffffu, send0, 1);
      const uint32_t recv1 = __shfl_xor_sync(0xffffffffu, send1, 1);
      // Words for (row g, col 2t), (row g, 2t+1), (row g+8, 2t), (row g+8, 2t+1).
      const uint32_t w0 = odd ? recv0 : r.x[0], w1 = odd ? recv1 : r.x[1];
      const uint32_t w2 = odd ? r.x[2] : recv0, w3 = odd ? r.x[3] : recv1;
      s[mi][nt][0] *= w0 >= sd.threshold ? sd.keep_scale : 0.f;
      s[mi][nt][1] *= w1 >= sd.threshold ? sd.keep_scale : 0.f;
      s[mi][nt][2] *= w2 >= sd.threshold ? sd.keep_scale : 0.f;
      s[mi][nt][3] *= w3 >= sd.threshold ? sd.keep_scale : 0.f;
    }
}

FG_ATTN_DEV uint32_t pick4(const Philox4& r, uint32_t i) {
  return i == 0 ? r.x[0] : i == 1 ? r.x[1] : i == 2 ? r.x[2] : r.x[3];
}

// Transposed form (rows = the 16 keys kw0 + g, + 8 of a dK/dV warp; columns = queries; the
// layout of mask_scores_transposed): z[e] = Z / (1 - p) of element e of column tile nt, whose
// queries are q0 + 8 nt + 2t (+1 for odd e). The four keys of one Philox call (one query) sit
// in lanes 4r + t + 16a (r = 0..3) of rows g = 4a + r, so per column tile those four lanes need
// exactly four calls (key groups a, a+2 x queries 2t, 2t+1): lane r makes call r and a 4 x 4
// transpose by three xor-shuffles hands each lane its word of each call (element e of lane r
// is word r of call e). r4 = (lane >> 2) & 3, a4 = lane >> 4.
FG_ATTN_DEV void dropout_factors_transposed(float (&z)[4], int64_t kw0, int64_t q0, int nt, int t,
                                            uint32_t r4, uint32_t a4, uint32_t ph, uint32_t offset,
                                            const SoftmaxDropout& sd) {
  const uint32_t grp = uint32_t(kw0 >> 2) + a4 + 2u * (r4 >> 1);
  const uint32_t i = uint32_t(q0 + nt * 8 + 2 * t) + (r4 & 1u);
  const Philox4 r = philox4x32_10(grp, i, ph, offset, sd.pk0, sd.pk1);
  uint32_t keep = uint32_t(pick4(r, r4) >= sd.threshold) << r4;
#pragma unroll
  for (uint32_t x = 1; x < 4; ++x) {
    const uint32_t recv = __shfl_xor_sync(0xffffffffu, pick4(r, r4 ^ x), int(x << 2));
    keep |= uint32_t(recv >= sd.threshold) << (r4 ^ x);
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) z[e] = (keep >> e) & 1u ? sd.keep_scale : 0.f;
}

}  // namespace attn
}  // namespace fg
