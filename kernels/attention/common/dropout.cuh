// Dropout on the mma score tiles of the tensor-core kernels, bit for bit the rule of
// attention_dropout_keep (core/philox.h): element (b, h, i, j) is kept iff byte j % 16 of the
// Philox call on counter (j / 16, i, b Hq + h, offset) reaches the threshold.
//
// One call yields the bytes of 16 elements, but the lanes that hold those elements in the mma
// layout are not the lane that made the call. So each lane makes one call per 16 of its own
// elements, and a transpose by xor-shuffles hands every lane the bytes it holds. The transpose
// (transpose_stage) works on items indexed by the lane that needs them: at each stage, lanes
// paired across one lane bit swap the half of their items whose index bit differs from their
// own lane bit. After one stage per bit, item k of a lane is the one lane k made for it.
#pragma once
#include <cstdint>

#include "core/philox.h"
#include "kernels/attention/common/ptx.cuh"
#include "kernels/attention/common/softmax.cuh"

namespace fg {
namespace attn {

// One transpose stage over 32-bit items a[k]: partner lane = lane ^ kLaneXor, and item index
// bit kBit is compared with the lane's bit (`mine`). The lane keeps the items whose bit equals
// its own and receives, into the slots of those it sends, the partner's.
template <int kBit, int kLaneXor, int kN>
FG_ATTN_DEV void transpose_stage(uint32_t (&a)[kN], bool mine) {
#pragma unroll
  for (int k = 0; k < kN; ++k) {
    if ((k >> kBit) & 1) continue;
    const int k1 = k | (1 << kBit);
    const uint32_t send = mine ? a[k] : a[k1];
    const uint32_t recv = __shfl_xor_sync(0xffffffffu, send, kLaneXor);
    a[k] = mine ? recv : a[k];
    a[k1] = mine ? a[k1] : recv;
  }
}

// The same stage on 16-bit items, two per word (item 2m is the low half of word m, 2m + 1 the
// high half), for item bit 0: each lane sends the four halves of one parity, two per shuffle.
template <int kLaneXor>
FG_ATTN_DEV void transpose_stage_halves(uint32_t (&w)[4], bool mine) {
  const uint32_t send_sel = mine ? 0x5410u : 0x7632u;  // low halves : high halves of (x, y)
  const uint32_t lo_sel = mine ? 0x3254u : 0x5410u;    // recv's low half into w's sent half
  const uint32_t hi_sel = mine ? 0x3276u : 0x7610u;    // recv's high half into w's sent half
#pragma unroll
  for (int m = 0; m < 4; m += 2) {
    const uint32_t recv =
        __shfl_xor_sync(0xffffffffu, __byte_perm(w[m], w[m + 1], send_sel), kLaneXor);
    w[m] = __byte_perm(w[m], recv, lo_sel);
    w[m + 1] = __byte_perm(w[m + 1], recv, hi_sel);
  }
}

// Whether byte k (0..3) of w reaches the threshold: the byte moved to the top, compared with
// threshold << 24 (the bits below it cannot lift it over a threshold with zero low bits).
FG_ATTN_DEV bool byte_kept(uint32_t w, int k, uint32_t thr24) { return (w << (24 - 8 * k)) >= thr24; }

// Row form (rows = queries; the layout of mask_scores): multiplies s by Z / (1 - p), after the
// row sums took it undropped. Per warp row block mi and chunk of four column tiles (32 keys:
// two 16-key groups, rows g and g + 8), the quad's four lanes make the chunk's four calls:
// lane t draws row g + 8 (t & 1), group 2c + (t >> 1). Lane t needs bytes 2t, 2t + 1, 8 + 2t,
// 9 + 2t of every one of them (its two columns in each of the group's two column tiles).
template <int kMT, int kNT>
FG_ATTN_DEV void apply_dropout(float (&s)[kMT][kNT][4], int64_t wr0, int64_t k0, int g, int t,
                               uint32_t ph, uint32_t offset, const SoftmaxDropout& sd) {
  static_assert(kNT % 4 == 0, "dropout works on chunks of four 8-key column tiles");
  const uint32_t thr24 = sd.threshold << 24;  // 256 -> 0: all kept, but keep_scale is then 0
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int c = 0; c < kNT / 4; ++c) {
      const uint32_t i = uint32_t(wr0 + mi * 16 + g + 8 * (t & 1));
      const uint32_t grp = uint32_t(k0 >> 4) + uint32_t(2 * c + (t >> 1));
      const Philox4 r = philox4x32_10(grp, i, ph, offset, sd.pk0, sd.pk1);
      // Item k: the bytes lane k needs, halfword k & 1 of words k >> 1 and 2 + (k >> 1).
      uint32_t a[4];
#pragma unroll
      for (int k = 0; k < 4; ++k)
        a[k] = __byte_perm(r.x[k >> 1], r.x[2 + (k >> 1)], (k & 1) ? 0x7632u : 0x5410u);
      transpose_stage<0, 1>(a, (t & 1) != 0);
      transpose_stage<1, 2>(a, (t & 2) != 0);
      // a[k] came from lane k: row half k & 1, group 2c + (k >> 1); its bytes 0, 1 are columns
      // 2t, 2t + 1 of the group's first column tile, bytes 2, 3 those of its second.
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int hr = k & 1, nt = 4 * c + 2 * (k >> 1);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float& x = s[mi][nt + (e >> 1)][2 * hr + (e & 1)];
          x *= byte_kept(a[k], e, thr24) ? sd.keep_scale : 0.f;
        }
      }
    }
}

// Transposed form (rows = the 16 keys kw0 + g, + 8 of a dK/dV warp, one 16-key group since kw0
// is a multiple of 16; columns = queries; the layout of mask_scores_transposed): the keep bits
// of column tiles 4c .. 4c + 3, as w[nt - 4c] whose bytes are (key g, query 2t), (key g + 8,
// query 2t), (key g, query 2t + 1), (key g + 8, query 2t + 1). The eight lanes of one t share
// the chunk's eight calls: lane g draws query q0 + 8 (4c + (g >> 1)) + 2t + (g & 1), and lane g'
// needs bytes g' and g' + 8 of each (a 16-bit item; an 8 x 8 transpose over lane bits 2..4).
FG_ATTN_DEV void dropout_words_transposed(uint32_t (&w)[4], int64_t kw0, int64_t q0, int c,
                                          int g, int t, uint32_t ph, uint32_t offset,
                                          const SoftmaxDropout& sd) {
  const uint32_t i = uint32_t(q0 + 8 * (4 * c + (g >> 1)) + 2 * t + (g & 1));
  const Philox4 r = philox4x32_10(uint32_t(kw0 >> 4), i, ph, offset, sd.pk0, sd.pk1);
  // Word m holds items 2m and 2m + 1: bytes 2m, 2m + 8, 2m + 1, 2m + 9.
#pragma unroll
  for (int m = 0; m < 4; ++m)
    w[m] = __byte_perm(r.x[m >> 1], r.x[2 + (m >> 1)], (m & 1) ? 0x7362u : 0x5140u);
  transpose_stage_halves<4>(w, (g & 1) != 0);
  transpose_stage<0, 8>(w, (g & 2) != 0);  // item bit 1 = word bit 0
  transpose_stage<1, 16>(w, (g & 4) != 0);  // item bit 2 = word bit 1
}

// Z / (1 - p) of element e of column tile 4c + m (layout of mask_scores_transposed:
// e = 2 (key half) + query parity, found in byte 2 parity + key half of w[m]).
FG_ATTN_DEV float dropout_factor_transposed(const uint32_t (&w)[4], int m, int e,
                                            const SoftmaxDropout& sd) {
  return byte_kept(w[m], 2 * (e & 1) + (e >> 1), sd.threshold << 24) ? sd.keep_scale : 0.f;
}

}  // namespace attn
}  // namespace fg
