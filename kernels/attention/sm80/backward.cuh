// Tensor-core FlashAttention-2 backward for bf16 / fp16 on mma.sync (sm_80 and later), and its
// launcher sm80::run_backward<T, D>, in the launch sequence of common/backward.cuh. It computes
// the backward of params.h exactly (same mask rule, same dropout bits).
//
// dK/dV: dkdv_kernel, the block of backward_dkdv.cuh with mma.sync products.
// dQ in deterministic mode: dq_kernel, one block per (query tile of kBM = 16 kWarps rows, query
// head, batch), laid out like the forward (each warp owns 16 query rows, K and V tiles streamed
// through two cp.async stages, causal and block-mask tiles skipped). Per key tile and warp:
// S = Q K^T and dP = dO V^T (mma.sync), P = exp2(S sl2 - LSE log2 e), dP Z by the forward's
// dropout step, dS = scale P (dP Z - D_i), dQ += dS K with dS re-packed from the accumulators
// and K through ldmatrix.trans. dQ is summed in registers in a fixed order: no atomics, so the
// result is the same bit for bit from run to run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/backward.cuh"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/sm80/backward_dkdv.cuh"

namespace fg {
namespace attn {
namespace sm80 {

template <typename T, int D, bool kAtomicDq>
__global__ void __launch_bounds__(Config<D>::kBwdWarps * 32, 1)
    dkdv_kernel(const AttentionParams p, const float* __restrict__ Di,
                float* __restrict__ dq_accum) {
  extern __shared__ __align__(128) unsigned char tc_smem[];
  dkdv_block<T, D, MmaProducts<T, D, Config<D>::kKeepKV>, kAtomicDq>(p, Di, dq_accum, tc_smem);
}

template <typename T, int D>
__global__ void __launch_bounds__(Config<D>::kDqWarps * 32, 2)
    dq_kernel(const AttentionParams p, const float* __restrict__ Di) {
  using Cfg = Config<D>;
  constexpr int kThreads = Cfg::kDqWarps * 32, kBM = Cfg::kDqBM, kBN = Cfg::kDqBN;
  constexpr int kNT = kBN / 8, kDT = D / 8;
  constexpr uint32_t kRowBytes = tile_dim(D) * 2;  // (D = 96 rows padded to 128)
  constexpr uint32_t kTileQ = kBM * kRowBytes, kStageBytes = kBN * kRowBytes;
  static_assert(kBlockMaskTileQ % 16 == 0 && kBlockMaskTileK % kBN == 0,
                "a warp's rows and a key tile must lie in one block-mask tile");

  extern __shared__ __align__(128) unsigned char tc_smem[];
  const uint32_t sQ = align1024(smem_u32(tc_smem));
  const uint32_t sdO = sQ + kTileQ;
  const uint32_t sK = sdO + kTileQ;          // 2 stages
  const uint32_t sV = sK + 2 * kStageBytes;  // 2 stages

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const KeyValueStream<D, kBM, kBN, kThreads, uint16_t> kv(p, sK, sV);
  const int64_t q0 = kv.q0, h = kv.h, b = kv.b;
  const SoftmaxDropout sd(p);
  const float scale = float(p.softmax_scale);
  const int64_t kt = kv.start(p, [&] {
    load_tile_async<D, kBM, kThreads>(sQ, p.q_head<const uint16_t>(b, h), p.q_seq_stride, q0, p.Nq);
    load_tile_async<D, kBM, kThreads>(sdO, p.do_head<const uint16_t>(b, h), p.do_seq_stride, q0,
                                      p.Nq);
  });

  // This thread's rows g and g + 8 of the warp: LSE log2 e (+inf past Nq, see lse_log2) and D_i.
  const int64_t wr0 = q0 + warp * 16, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;
  float l2[2], di[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = wr0 + g + 8 * hr;
    const int64_t row = (b * p.Hq + h) * p.Nq + i;
    l2[hr] = lse_log2(i < p.Nq ? static_cast<const float*>(p.lse)[row] : -INFINITY);
    di[hr] = i < p.Nq ? Di[row] : 0.f;
  }
  float acc[1][kDT][4];
  zero(acc[0]);

  const uint32_t aLane = lane_offset_a<kRowBytes>(lane, warp * 16);
  const uint32_t bLane = lane_offset_b<kRowBytes>(lane), tLane = lane_offset_bt<kRowBytes>(lane);
  kv.template for_each_key_tile<false>(p, kt, [&](int64_t k0, int64_t k1, int stage) {
    const TileVisibility wvis =
        wr0 < p.Nq ? tile_visibility(p, h, wr0, wr1, k0, k1) : TileVisibility::empty;
    if (wvis != TileVisibility::empty) {  // warp-uniform
      const uint32_t kS = sK + stage * kStageBytes, vS = sV + stage * kStageBytes;
      float s[1][kNT][4], dp[1][kNT][4];
      zero(s[0]);
      zero(dp[0]);
      mma_score_pair<T, kNT, D, kRowBytes>(
          s[0], dp[0],
          [&](int ks, uint32_t(&aq)[4], uint32_t(&ao)[4]) {
            ldmatrix_x4(aq, (sQ + aLane) ^ uint32_t(ks << 5));
            ldmatrix_x4(ao, (sdO + aLane) ^ uint32_t(ks << 5));
          },
          kS + bLane, vS + bLane);
      if (wvis == TileVisibility::partial || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      if (sd.dropout) apply_dropout(dp, wr0, k0, g, t, kv.ph, uint32_t(p.offset), sd);  // dP Z
      // dS = scale P (dP Z - D_i), in place of dp.
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int hr = e >> 1;
          const float pv = fast_exp2(fmaf(s[0][nt][e], sd.sl2, -l2[hr]));
          dp[0][nt][e] = scale * pv * (dp[0][nt][e] - di[hr]);
        }
      mma_pv<T, 1, kNT, kDT, kRowBytes>(acc, dp, kS + tLane);  // dQ += dS K
    }
  });

  store_fragment_rows<T>(wr0, p.Nq, g, t, p.dq_head<T>(b, h), p.dq_seq_stride, acc[0]);
}

// The tensor-core backward's launch sequence with this file's dQ kernel and the dK/dV kernel
// dkdv(std::bool_constant<atomic_dq>) returns (this file's, or sm90's wgmma one).
// dkdv_smem: the dK/dV kernel's shared memory (more than Config::kBwdSmem where it stages dQ).
template <typename T, int D, typename PickDkdv>
void run_tc_backward(const AttentionParams& p, cudaStream_t stream, PickDkdv dkdv,
                     size_t dkdv_smem = Config<D>::kBwdSmem) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  using Cfg = Config<D>;
  auto launch_dkdv = [&](auto atomic_dq, float* Di, float* dq_accum) {
    auto kernel = dkdv(atomic_dq);
    set_smem_limit(kernel, dkdv_smem);
    const dim3 grid(unsigned((p.Nk + Cfg::kBwdBN - 1) / Cfg::kBwdBN), unsigned(p.Hkv),
                    unsigned(p.B));
    kernel<<<grid, Cfg::kBwdWarps * 32, dkdv_smem, stream>>>(p, Di, dq_accum);
    FG_LAUNCH_CHECK();
  };
  auto launch_dq = [&](float* Di) {
    auto kernel = dq_kernel<T, D>;
    set_smem_limit(kernel, Cfg::kDqSmem);
    const dim3 grid(unsigned((p.Nq + Cfg::kDqBM - 1) / Cfg::kDqBM), unsigned(p.Hq), unsigned(p.B));
    kernel<<<grid, Cfg::kDqWarps * 32, Cfg::kDqSmem, stream>>>(p, Di);
    FG_LAUNCH_CHECK();
  };
  run_backward_sequence<T, D, float>(p, stream, launch_dkdv, launch_dq);
}

template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  run_tc_backward<T, D>(p, stream, [](auto atomic_dq) {
    return dkdv_kernel<T, D, decltype(atomic_dq)::value>;
  });
}

}  // namespace sm80
}  // namespace attn
}  // namespace fg
