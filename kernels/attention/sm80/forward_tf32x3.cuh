// fp32 forward on tensor cores (3xTF32, mma.sync m16n8k8), for D in {64, 128}; launched by
// sm80::run_forward<float, D> (forward.cuh).
//
// The algorithm, pipeline and tile skipping of the 16-bit forward, with one m16 row tile per
// warp (kBM = 16 kWarps) and fp32 tiles in shared memory (load_tile_f32_async: rows padded to
// D + 4 floats; the fragments are plain 32-bit loads, since ldmatrix moves 16-bit elements).
// Each product is split into three TF32 products (split_tf32, mma_1688_3xtf32), which keeps the
// result near fp32 accuracy (0.7-5.5x the error of PyTorch's fp32 SDPA on an H100); the
// masking, softmax, dropout and output steps are the shared ones. Not the default for fp32: the
// dispatcher takes it only with FLASHGRAD_ALLOW_TF32=1 (kernels/attention/dispatch.cu).
//
// P V without a shared-memory round trip: the S accumulators give a thread keys 2t and 2t+1 of
// each 8-key column tile, while the tf32 A fragment wants k columns t and t+4. The sum over
// keys does not care about their order, so k column t stands for key 2t and k column t+4 for
// key 2t+1, in A (a0 = s0, a1 = s2, a2 = s1, a3 = s3) and in B (b0 = V[2t][g], b1 = V[2t+1][g]).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/attention/common/dropout.cuh"
#include "kernels/attention/common/mask.cuh"
#include "kernels/attention/common/mma.cuh"
#include "kernels/attention/common/softmax.cuh"
#include "kernels/attention/common/tiles.cuh"
#include "kernels/attention/sm80/config.cuh"

namespace fg {
namespace attn {
namespace sm80 {

// S = Q K^T for the warp's 16 rows (qa: its Q rows in shared memory at row g, column t) and the
// kNT * 8 keys of the tile kS, each product as three TF32 products.
template <int D, int kNT, int kLd>
FG_ATTN_DEV void tf32x3_scores(float (&s)[1][kNT][4], const float* qa, const float* kS, int g,
                               int t) {
  zero(s[0]);
#pragma unroll
  for (int ks = 0; ks < D / 8; ++ks) {
    uint32_t ahi[4], alo[4];
    split_tf32(qa[ks * 8], ahi[0], alo[0]);
    split_tf32(qa[8 * kLd + ks * 8], ahi[1], alo[1]);
    split_tf32(qa[ks * 8 + 4], ahi[2], alo[2]);
    split_tf32(qa[8 * kLd + ks * 8 + 4], ahi[3], alo[3]);
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const float* kb = kS + (nt * 8 + g) * kLd + ks * 8 + t;  // b0 = K[key g][dim t]
      uint32_t bh0, bl0, bh1, bl1;
      split_tf32(kb[0], bh0, bl0);
      split_tf32(kb[4], bh1, bl1);
      mma_1688_3xtf32(s[0][nt], ahi, alo, bh0, bh1, bl0, bl1);
    }
  }
}

// O += P V, k column t standing for key 2t and t + 4 for key 2t + 1 (see the file comment).
template <int kNT, int kDT, int kLd>
FG_ATTN_DEV void tf32x3_pv(float (&acc)[1][kDT][4], const float (&s)[1][kNT][4], const float* vS,
                           int g, int t) {
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt) {
    uint32_t phi[4], plo[4];
    split_tf32(s[0][nt][0], phi[0], plo[0]);
    split_tf32(s[0][nt][2], phi[1], plo[1]);
    split_tf32(s[0][nt][1], phi[2], plo[2]);
    split_tf32(s[0][nt][3], phi[3], plo[3]);
    const float* vb = vS + (nt * 8 + 2 * t) * kLd + g;  // b0 = V[2t][g], b1 = V[2t+1][g]
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
      uint32_t bh0, bl0, bh1, bl1;
      split_tf32(vb[dt * 8], bh0, bl0);
      split_tf32(vb[kLd + dt * 8], bh1, bl1);
      mma_1688_3xtf32(acc[0][dt], phi, plo, bh0, bh1, bl0, bl1);
    }
  }
}

template <int D>
__global__ void __launch_bounds__(Config<D>::kTf32Warps * 32, 2)
    forward_tf32x3_kernel(const AttentionParams p) {
  using Cfg = Config<D>;
  constexpr int kThreads = Cfg::kTf32Warps * 32, kBM = Cfg::kTf32BM, kBN = Cfg::kTf32BN;
  constexpr int kNT = kBN / 8, kDT = D / 8, kLd = D + 4;
  static_assert(kBlockMaskTileQ % 16 == 0 && kBlockMaskTileK % kBN == 0,
                "tiles must divide the 64 x 64 block-mask tile");

  extern __shared__ __align__(16) float tf_smem[];
  float* const fQ = tf_smem;
  float* const fK = fQ + kBM * kLd;      // 2 stages
  float* const fV = fK + 2 * kBN * kLd;  // 2 stages
  const uint32_t sQ = smem_u32(fQ), sK = smem_u32(fK), sV = smem_u32(fV);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const KeyValueStream<D, kBM, kBN, kThreads, float> kv(p, sK, sV);
  const int64_t q0 = kv.q0, h = kv.h, b = kv.b;
  const SoftmaxDropout sd(p);
  const int64_t kt = kv.start(p, [&] {
    load_tile_f32_async<D, kBM, kThreads>(sQ, p.q_head<const float>(b, h), p.q_seq_stride, q0,
                                          p.Nq);
  });

  float acc[1][kDT][4], m[1][2], l[1][2];
  softmax_init(m, l, acc);

  const int wrow = warp * 16;
  const int64_t wr0 = q0 + wrow, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;
  const float* qa = fQ + (wrow + g) * kLd + t;  // a0 at [8 ks], a2 at [8 ks + 4], +8 rows: a1, a3

  kv.template for_each_key_tile<false>(p, kt, [&](int64_t k0, int64_t k1, int stage) {
    const TileVisibility wvis =
        wr0 < p.Nq ? tile_visibility(p, h, wr0, wr1, k0, k1) : TileVisibility::empty;
    if (wvis != TileVisibility::empty) {  // warp-uniform
      const float* kS = fK + stage * kBN * kLd;
      const float* vS = fV + stage * kBN * kLd;
      float s[1][kNT][4];
      tf32x3_scores<D, kNT, kLd>(s, qa, kS, g, t);
      if (wvis == TileVisibility::partial || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      online_softmax(s, m, l, acc, sd.sl2);
      if (sd.dropout) apply_dropout(s, wr0, k0, g, t, kv.ph, uint32_t(p.offset), sd);
      tf32x3_pv<kNT, kDT, kLd>(acc, s, vS, g, t);
    }
  });

  float* o = p.o_head<float>(b, h);
  float* lse = p.lse_row<float>(b, h);
  finish_rows(acc, m, l, sd.sl2, p, lse, wr0, g, t, [&](int64_t i, int dt, float x0, float x1) {
    *reinterpret_cast<float2*>(o + i * p.o_seq_stride + dt * 8 + 2 * t) = make_float2(x0, x1);
  });
}

}  // namespace sm80
}  // namespace attn
}  // namespace fg
