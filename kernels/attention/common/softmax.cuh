// The softmax steps of the tensor-core kernels, on score tiles in the mma accumulator layout
// (common/mask.cuh describes it): the forward's online softmax and output rows, and the
// backward's probabilities recomputed from the LSE.
//
// Scores stay raw (unscaled) in the accumulators: exp(scale (s - m)) = exp2(s sl2 - m sl2) with
// sl2 = scale log2 e, one FFMA and one ex2 per element.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/philox.h"
#include "kernels/attention/common/ptx.cuh"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {

constexpr double kLog2e = 1.4426950408889634;

// The softmax scale and dropout constants of one call, as every tensor-core kernel uses them.
struct SoftmaxDropout {
  float sl2;                  // softmax scale * log2 e
  bool dropout;
  uint32_t threshold;         // keep iff the Philox word >= threshold
  float keep_scale;           // 1 / (1 - p)
  uint32_t pk0 = 0, pk1 = 0;  // Philox key
  FG_ATTN_DEV explicit SoftmaxDropout(const AttentionParams& p)
      : sl2(float(p.softmax_scale * kLog2e)),
        dropout(p.dropout_p > 0.0),
        threshold(attention_dropout_threshold(p.dropout_p)),
        keep_scale(float(attention_dropout_keep_scale(p.dropout_p))) {
    philox_key(p.seed, p.offset, pk0, pk1);
  }
};

// The online softmax state of a warp's rows before the first key tile: m = -inf, l = 0, acc = 0.
template <int kMT, int kDT>
FG_ATTN_DEV void softmax_init(float (&m)[kMT][2], float (&l)[kMT][2], float (&acc)[kMT][kDT][4]) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) m[mi][hr] = -INFINITY, l[mi][hr] = 0.f;
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][dt][e] = 0.f;
  }
}

// Online softmax in base 2 (a row's four owners are the four threads of a quad), in two steps
// so that a kernel can run the first while the previous tile's P V is still in flight:
//   softmax_scores updates the running max m and the per-thread partial sums l, turns s into
//   exp2(s * sl2 - m * sl2), and returns in alpha the factor the rows' accumulators must take;
//   rescale_rows multiplies them by it.
// online_softmax does both at once.
template <int kMT, int kNT>
FG_ATTN_DEV void softmax_scores(float (&s)[kMT][kNT][4], float (&m)[kMT][2], float (&l)[kMT][2],
                                float (&alpha)[kMT][2], float sl2) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float mx = m[mi][hr];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        mx = fmaxf(mx, fmaxf(s[mi][nt][2 * hr], s[mi][nt][2 * hr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // A row that has seen no visible key yet keeps m = -inf; subtracting 0 then keeps
      // exp2(-inf) = 0 instead of NaN.
      const float base = mx == -INFINITY ? 0.f : mx * sl2;
      alpha[mi][hr] = fast_exp2(m[mi][hr] * sl2 - base);
      m[mi][hr] = mx;
      l[mi][hr] *= alpha[mi][hr];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float pv = fast_exp2(fmaf(s[mi][nt][2 * hr + c], sl2, -base));
          l[mi][hr] += pv;  // undropped, as the softmax denominator must be
          s[mi][nt][2 * hr + c] = pv;
        }
    }
}
template <int kMT, int kDT>
FG_ATTN_DEV void rescale_rows(float (&acc)[kMT][kDT][4], const float (&alpha)[kMT][2]) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][dt][e] *= alpha[mi][e >> 1];
}
template <int kMT, int kNT, int kDT>
FG_ATTN_DEV void online_softmax(float (&s)[kMT][kNT][4], float (&m)[kMT][2], float (&l)[kMT][2],
                                float (&acc)[kMT][kDT][4], float sl2) {
  float alpha[kMT][2];
  softmax_scores(s, m, l, alpha, sl2);
  rescale_rows(acc, alpha);
}

// O = acc / l and LSE = ln 2 * (m * sl2 + log2 l); a row that saw no key gets O = 0 and
// LSE = -inf. store(i, dt, x0, x1) writes dims 8 dt + 2t and 8 dt + 2t + 1 of row i.
template <int kMT, int kDT, typename Store>
FG_ATTN_DEV void finish_rows(const float (&acc)[kMT][kDT][4], const float (&m)[kMT][2],
                             const float (&l)[kMT][2], float sl2, const AttentionParams& p,
                             float* lse, int64_t wr0, int g, int t, Store store) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float lsum = l[mi][hr];
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
      const int64_t i = wr0 + mi * 16 + g + hr * 8;
      if (i >= p.Nq) continue;
      const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt)
        store(i, dt, acc[mi][dt][2 * hr] * inv, acc[mi][dt][2 * hr + 1] * inv);
      if (t == 0)
        lse[i] = lsum > 0.f ? (m[mi][hr] * sl2 + log2f(lsum)) * 0.6931471805599453f : -INFINITY;
    }
}

// A stored LSE in base 2, as the backward subtracts it: LSE log2 e, or +inf for a row that sees
// no key (LSE = -inf: all its scores were masked to -inf, and exp2(-inf - inf) = 0, not NaN).
FG_ATTN_DEV float lse_log2(float lse) { return lse == -INFINITY ? INFINITY : lse * float(kLog2e); }

// P^T = exp2(S^T sl2 - LSE log2 e) on the transposed tile of a dK/dV warp (rows = keys, element
// e of s[nt] at query column 8 nt + 2t + (e & 1)); lse points at the LSE of query column 0.
template <int kNT>
FG_ATTN_DEV void probabilities_transposed(float (&s)[kNT][4], const float* lse, int t, float sl2) {
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt) {
    const float2 l = *reinterpret_cast<const float2*>(lse + nt * 8 + 2 * t);
    const float l0 = lse_log2(l.x), l1 = lse_log2(l.y);
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      s[nt][2 * hr] = fast_exp2(fmaf(s[nt][2 * hr], sl2, -l0));
      s[nt][2 * hr + 1] = fast_exp2(fmaf(s[nt][2 * hr + 1], sl2, -l1));
    }
  }
}

}  // namespace attn
}  // namespace fg
