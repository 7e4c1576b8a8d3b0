// Warp-specialised FlashAttention forward for bf16 / fp16 on Hopper (sm_90a), D in {64, 128},
// and its launcher sm90ws::run_forward<T, D>: the structure of FlashAttention-3 (Shah et al.,
// 2024, "FlashAttention-3: Fast and Accurate Attention with Asynchrony and Low-precision"),
// written for this library's tiles, masks and dropout.
//
// A block owns kBM = 128 query rows and is three warpgroups:
//   producer  (warpgroup 0, one thread): TMA copies of the Q tile and of each visible key tile's
//             K and V into a ring of kStages shared-memory stages, in the 128-byte-swizzled
//             layout wgmma reads (common/wgmma.cuh); "full" barriers count the bytes in, the
//             consumers' arrivals on "empty" barriers give a stage back. It keeps 24 registers
//             (setmaxnreg) so that the consumers can have 240.
//   consumers (warpgroups 1 and 2, 64 query rows each): per key tile of kBN = 128 keys,
//             S = Q K^T as m64n128k16 wgmma (A and B from shared memory), the online softmax,
//             dropout, and O += P V as m64n64k16 wgmma with P from registers.
// Inside a consumer the softmax of tile j overlaps the tensor cores: S_j = Q K_j^T is issued,
// then O += P_{j-1} V_{j-1}; the warpgroup waits for S_j alone, runs the softmax of tile j while
// the P V product is still in flight, then waits for it, gives its stage back, rescales O and
// packs P_j for the next step. The two consumers run apart from each other and so also hide
// each other's softmax.
//
// Same function, tile skipping (causal, Nk), masking, dropout bits and output as the other
// forwards; block masks are left to them (a 128-key tile spans two 64-key mask tiles, and the
// in-tile masking here is causal and length only). TMA zero-fills rows past Nq and Nk.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/dropout.cuh"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/mask.cuh"
#include "kernels/attention/common/mma.cuh"
#include "kernels/attention/common/softmax.cuh"
#include "kernels/attention/common/tensor_map.h"
#include "kernels/attention/common/tiles.cuh"
#include "kernels/attention/common/tma.cuh"
#include "kernels/attention/common/wgmma.cuh"

namespace fg {
namespace attn {
namespace sm90ws {

// Shared memory: 1 KB of alignment slack, Q (kBM rows), kStages stages of K and V (kBN rows
// each), then the barriers. A tile of D = 128 is two 64-column blocks one after the other.
template <int D> struct ForwardConfig {
  static_assert(D == 64 || D == 128, "the warp-specialised forward is built for D = 64 and 128");
  static constexpr int kConsumers = 2;
  static constexpr int kBM = 64 * kConsumers, kBN = 128, kThreads = 128 * (kConsumers + 1);
  static constexpr int kStages = D == 64 ? 4 : 3;
  static constexpr uint32_t kTileQ = kBM * D * 2, kStage = kBN * D * 2;
  static constexpr int kBarriers = 1 + 3 * kStages;  // Q, full K, full V, empty
  static constexpr size_t kSmem = 1024 + kTileQ + 2 * size_t(kStages) * kStage + 8 * kBarriers;
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;
};

struct ForwardMaps {
  CUtensorMap q, k, v;
};

template <typename T, int D>
__global__ void __launch_bounds__(ForwardConfig<D>::kThreads, 1)
    forward_kernel(const AttentionParams p, const __grid_constant__ ForwardMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = ForwardConfig<D>;
  constexpr int kBM = Cfg::kBM, kBN = Cfg::kBN, kS = Cfg::kStages;
  constexpr int kNT = kBN / 8, kDT = D / 8, kCB = D / 64;
  constexpr uint32_t kStage = Cfg::kStage;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const uint32_t sQ = align1024(smem_u32(tc_smem));
  const uint32_t sK = sQ + Cfg::kTileQ, sV = sK + kS * kStage, bars = sV + kS * kStage;
  const uint32_t bar_q = bars;
  auto full_k = [&](int s) { return bars + uint32_t(8 * (1 + s)); };
  auto full_v = [&](int s) { return bars + uint32_t(8 * (1 + kS + s)); };
  auto empty = [&](int s) { return bars + uint32_t(8 * (1 + 2 * kS + s)); };

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const QueryTile<kBM, kBN> tile(p);
  if (tid == 0) {
    mbar_init(bar_q, 1);
    for (int s = 0; s < kS; ++s) {
      mbar_init(full_k(s), 1);
      mbar_init(full_v(s), 1);
      mbar_init(empty(s), 4 * Cfg::kConsumers);  // one arrival per consumer warp
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warp < 4) {
    // The producer. Both sides walk the same visible key tiles; tile n uses stage n % kS, in
    // phase (n / kS) & 1 of its barriers.
    setmaxnreg_dec<Cfg::kProducerRegs>();
    if (tid == 0) {
      const int b = int(tile.b), hk = int(tile.hk);
      mbar_arrive_expect_tx(bar_q, Cfg::kTileQ);
#pragma unroll
      for (int cb = 0; cb < kCB; ++cb)
        tma_load_4d(sQ + uint32_t(cb * kBM * 128), &maps.q, bar_q, 64 * cb, int(tile.q0),
                    int(tile.h), b);
      int n = 0;
      for (int64_t kt = tile.next_visible(p, 0); kt < tile.nkt;
           kt = tile.next_visible(p, kt + 1), ++n) {
        const int s = n % kS;
        mbar_wait(empty(s), uint32_t((n / kS) & 1) ^ 1u);
        mbar_arrive_expect_tx(full_k(s), kStage);
#pragma unroll
        for (int cb = 0; cb < kCB; ++cb)
          tma_load_4d(sK + s * kStage + uint32_t(cb * kBN * 128), &maps.k, full_k(s), 64 * cb,
                      int(kt * kBN), hk, b);
        mbar_arrive_expect_tx(full_v(s), kStage);
#pragma unroll
        for (int cb = 0; cb < kCB; ++cb)
          tma_load_4d(sV + s * kStage + uint32_t(cb * kBN * 128), &maps.v, full_v(s), 64 * cb,
                      int(kt * kBN), hk, b);
      }
    }
    return;
  }

  // A consumer warp: warpgroup wg (query rows g0 .. g0 + 63), its own rows wr0 .. wr0 + 15.
  setmaxnreg_inc<Cfg::kConsumerRegs>();
  const int cw = warp - 4, wg = cw / 4;
  const int g = lane >> 2, t = lane & 3;
  const int64_t wr0 = tile.q0 + 16 * cw, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;
  const SoftmaxDropout sd(p);
  const uint32_t qA = sQ + uint32_t(wg * 64 * 128);

  float acc[1][kDT][4], m[1][2], l[1][2], sc[1][kNT][4];
  softmax_init(m, l, acc);
  uint32_t pa[kBN / 16][4];  // P of the tile whose P V is next, as wgmma A fragments
  auto release = [&](int s) {
    __syncwarp();
    if (lane == 0) mbar_arrive(empty(s));
  };
  // S = Q K^T on stage s: k16 step ks reads 16 columns of column block ks / 4 (+32 bytes a step).
  auto issue_s = [&](int s) {
    const uint32_t kTile = sK + uint32_t(s) * kStage;
    zero(sc[0]);
    fence_accumulator(sc[0]);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks)
      wgmma_m64n128k16_ss<T>(
          sc[0], sw128_descriptor(qA + uint32_t((ks >> 2) * kBM * 128 + (ks & 3) * 32), 16),
          sw128_descriptor(kTile + uint32_t((ks >> 2) * kBN * 128 + (ks & 3) * 32), 16));
    wgmma_commit();
  };
  // O += P V on stage s: per 16-key slice kk, one m64n64 wgmma per 64-column block of V.
  auto issue_pv = [&](int s) {
    const uint32_t vS = sV + uint32_t(s) * kStage;
    fence_accumulator(acc[0]);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk)
#pragma unroll
      for (int cb = 0; cb < kCB; ++cb)
        wgmma_m64n64k16_rs<T, 1>(*reinterpret_cast<float(*)[8][4]>(&acc[0][8 * cb][0]), pa[kk],
                                 sw128_descriptor(vS + uint32_t(cb * kBN * 128 + kk * 16 * 128), 16));
    wgmma_commit();
  };
  // The scores of keys [k0, k1) once S is in: masked where the warp's rows need it (a warp
  // whose rows see none of the tile masks it whole, and adds zeros), then exponentiated.
  float alpha[1][2];
  auto softmax_step = [&](int64_t k0, int64_t k1) {
    fence_accumulator(sc[0]);
    const TileVisibility wvis =
        wr0 < p.Nq ? tile_visibility(p, tile.h, wr0, wr1, k0, k1) : TileVisibility::empty;
    if (wvis != TileVisibility::full || k1 - k0 < kBN) mask_scores(sc, p, wr0, k0, g, t);
    softmax_scores(sc, m, l, alpha, sd.sl2);
  };
  auto make_p = [&](int64_t k0) {
    if (sd.dropout) apply_dropout(sc, wr0, k0, g, t, tile.ph, uint32_t(p.offset), sd);
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) pack_a<T>(sc[0], kk, pa[kk]);
  };

  mbar_wait(bar_q, 0);
  int64_t kt = tile.next_visible(p, 0);
  if (kt < tile.nkt) {
    // Tile 0 alone; then each step issues S of tile n and P V of tile n - 1 together. Every
    // warpgroup runs every tile the block sees (whole-tile skips per warpgroup would put the
    // wgmma in a branch, where the compiler serialises them).
    {
      const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
      mbar_wait(full_k(0), 0);
      issue_s(0);
      wgmma_wait<0>();
      softmax_step(k0, k1);
      make_p(k0);
    }
    int prev = 0, n = 1;
    uint32_t prev_phase = 0;
    for (kt = tile.next_visible(p, kt + 1); kt < tile.nkt; kt = tile.next_visible(p, kt + 1), ++n) {
      const int s = n % kS;
      const uint32_t phase = uint32_t((n / kS) & 1);
      const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
      mbar_wait(full_k(s), phase);
      issue_s(s);
      mbar_wait(full_v(prev), prev_phase);
      issue_pv(prev);
      wgmma_wait<1>();  // S is in; P V may still run
      softmax_step(k0, k1);
      wgmma_wait<0>();
      fence_accumulator(acc[0]);
      fence_operand(pa);
      release(prev);
      rescale_rows(acc, alpha);
      make_p(k0);
      prev = s;
      prev_phase = phase;
    }
    mbar_wait(full_v(prev), prev_phase);
    issue_pv(prev);
    wgmma_wait<0>();
    fence_accumulator(acc[0]);
    fence_operand(pa);
    release(prev);
  }

  uint16_t* o = p.o_head<uint16_t>(tile.b, tile.h);
  float* lse = p.lse_row<float>(tile.b, tile.h);
  finish_rows(acc, m, l, sd.sl2, p, lse, wr0, g, t, [&](int64_t i, int dt, float x0, float x1) {
    *reinterpret_cast<uint32_t*>(o + i * p.o_seq_stride + dt * 8 + 2 * t) = pack2<T>(x0, x1);
  });
#else
  __trap();  // built without sm_90a code; the dispatcher never picks this kernel then
#endif
}

template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  using Cfg = ForwardConfig<D>;
  check_grid(p, "flash_attention_forward_cuda");
  ForwardMaps maps;
  maps.q = head_tensor_map(p.q, p.B, p.Nq, p.Hq, D, p.q_batch_stride, p.q_seq_stride,
                           p.q_head_stride, Cfg::kBM);
  maps.k = head_tensor_map(p.k, p.B, p.Nk, p.Hkv, D, p.k_batch_stride, p.k_seq_stride,
                           p.k_head_stride, Cfg::kBN);
  maps.v = head_tensor_map(p.v, p.B, p.Nk, p.Hkv, D, p.v_batch_stride, p.v_seq_stride,
                           p.v_head_stride, Cfg::kBN);
  auto kernel = forward_kernel<T, D>;
  set_smem_limit(kernel, Cfg::kSmem);
  const dim3 grid(unsigned((p.Nq + Cfg::kBM - 1) / Cfg::kBM), unsigned(p.Hq), unsigned(p.B));
  kernel<<<grid, Cfg::kThreads, Cfg::kSmem, stream>>>(p, maps);
  FG_LAUNCH_CHECK();
}

}  // namespace sm90ws
}  // namespace attn
}  // namespace fg
