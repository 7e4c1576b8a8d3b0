// Tensor-core FlashAttention forward for bf16 / fp16 on Hopper (wgmma, sm_90a), D = 64, and
// its launcher sm90::run_forward<T, D>. At D = 128 the mma.sync forward (sm80/forward.cuh) is
// the faster one: this form does not overlap softmax and wgmma inside a warpgroup.
//
// Same algorithm, tile skipping, masking, dropout bits and output as the mma.sync forward, with
// the two matrix products issued as warpgroup-wide wgmma: a block is kWarpgroups warpgroups of
// 64 query rows each.
//   S = Q K^T:  m64n64k16, A = Q and B = K straight from shared memory (K-major descriptors),
//               so one read of a K tile serves the 64 rows of a warpgroup, not one warp's;
//   O += P V:   m64n64k16, A = P from registers (the S accumulators re-packed, as in the mma.sync
//               kernel), B = V from shared memory through an MN-major descriptor.
// The swizzled tiles of load_tile_async are read by wgmma as they are (common/wgmma.cuh says
// why, and how the descriptors address them). Two blocks of two warpgroups per SM: the blocks
// drift apart, so one block's softmax overlaps the other's wgmma.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/dropout.cuh"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/mask.cuh"
#include "kernels/attention/common/mma.cuh"
#include "kernels/attention/common/softmax.cuh"
#include "kernels/attention/common/tiles.cuh"
#include "kernels/attention/common/wgmma.cuh"

namespace fg {
namespace attn {
namespace sm90 {

// The wgmma forward: kWarpgroups warpgroups per block (kBM query rows), kMinBlocks blocks per
// SM, key tiles of kBN. Shared memory: Q, 2 stages of K and V, and 1 KB of slack to align the
// base to 1024 bytes.
template <int D> struct ForwardConfig {
  static_assert(D == 64, "the wgmma forward is built for D = 64 only");
  static constexpr int kWarpgroups = 2, kMinBlocks = 2;
  static constexpr int kBM = 64 * kWarpgroups, kBN = 64, kThreads = 128 * kWarpgroups;
  static constexpr size_t kSmem = 2 * size_t(kBM * D + 2 * 2 * kBN * D) + 1024;
};

template <typename T, int D>
__global__ void __launch_bounds__(ForwardConfig<D>::kThreads, ForwardConfig<D>::kMinBlocks)
    forward_kernel(const AttentionParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Cfg = ForwardConfig<D>;
  constexpr int kThreads = Cfg::kThreads, kBM = Cfg::kBM, kBN = Cfg::kBN;
  constexpr int kNT = kBN / 8, kDT = D / 8;
  static_assert(kBlockMaskTileK % kBN == 0 && kBlockMaskTileQ % 64 == 0,
                "a warpgroup's rows and a key tile must lie in one block-mask tile");
  extern __shared__ __align__(128) unsigned char tc_smem[];
  constexpr uint32_t kTileQ = kBM * D * 2, kStage = kBN * D * 2;
  const uint32_t sQ = align1024(smem_u32(tc_smem));
  const uint32_t sK = sQ + kTileQ;
  const uint32_t sV = sK + 2 * kStage;

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int wg = warp / 4;  // warpgroup: rows 64 wg .. 64 wg + 63 of the tile
  const QueryTile<kBM, kBN> tile(p);
  const int64_t q0 = tile.q0, q1 = tile.q1, h = tile.h, b = tile.b, hk = tile.hk, nkt = tile.nkt;
  const uint16_t* k = p.k_head<const uint16_t>(b, hk);
  const uint16_t* v = p.v_head<const uint16_t>(b, hk);
  const SoftmaxDropout sd(p);
  const uint32_t ph = uint32_t(p.batch_index_base + b) * uint32_t(p.Hq) + uint32_t(h);

  // The key-tile pipeline is written out here rather than taken from KeyValueStream: the
  // shared form costs this kernel about 4% (it is the shortest loop body of the family).
  load_tile_async<D, kBM, kThreads>(sQ, p.q_head<const uint16_t>(b, h), p.q_seq_stride, q0, p.Nq);
  cp_async_commit();
  auto next_visible = [&](int64_t kt) { return tile.next_visible(p, kt); };
  int64_t kt = next_visible(0);
  if (kt < nkt) {
    load_tile_async<D, kBN, kThreads>(sK, k, p.k_seq_stride, kt * kBN, p.Nk);
    load_tile_async<D, kBN, kThreads>(sV, v, p.v_seq_stride, kt * kBN, p.Nk);
  }
  cp_async_commit();

  float acc[1][kDT][4], m[1][2], l[1][2];
  softmax_init(m, l, acc);

  const int64_t g0 = q0 + 64 * wg, g1 = g0 + 64 < p.Nq ? g0 + 64 : p.Nq;  // warpgroup rows
  const int64_t wr0 = q0 + 16 * warp, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;  // warp rows
  const uint32_t qA = sQ + uint32_t(wg * 64 * 128);  // the warpgroup's 64 rows of Q
  int stage = 0;

  while (kt < nkt) {
    cp_async_wait_all();
    fence_proxy_async();  // this thread's copies, visible to the wgmma (async proxy) reads
    __syncthreads();      // tile kt is in; every warp is done with the other stage
    const int64_t kt_next = next_visible(kt + 1);
    if (kt_next < nkt) {
      load_tile_async<D, kBN, kThreads>(sK + (stage ^ 1) * kStage, k, p.k_seq_stride,
                                        kt_next * kBN, p.Nk);
      load_tile_async<D, kBN, kThreads>(sV + (stage ^ 1) * kStage, v, p.v_seq_stride,
                                        kt_next * kBN, p.Nk);
    }
    cp_async_commit();

    const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
    // wgmma is warpgroup-wide, so the skip decision is too (64 rows inside one mask tile).
    const TileVisibility gvis =
        g0 < p.Nq ? tile_visibility(p, h, g0, g1, k0, k1) : TileVisibility::empty;
    if (gvis != TileVisibility::empty) {
      const uint32_t kS = sK + stage * kStage, vS = sV + stage * kStage;
      float s[1][kNT][4];
      zero(s[0]);
      // S = Q K^T, k16 step ks at +32 ks bytes.
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks)
        wgmma_m64n64k16_ss<T, 0>(s[0], sw128_descriptor(qA + uint32_t(ks * 32), 16),
                                 sw128_descriptor(kS + uint32_t(ks * 32), 16));
      wgmma_commit();
      wgmma_wait_all();
      fence_accumulator(s[0]);

      const TileVisibility wvis =
          wr0 < p.Nq ? tile_visibility(p, h, wr0, wr1, k0, k1) : TileVisibility::empty;
      if (wvis != TileVisibility::full || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      online_softmax(s, m, l, acc, sd.sl2);
      if (sd.dropout) apply_dropout(s, wr0, k0, g, t, ph, uint32_t(p.offset), sd);

      // O += P V over the tile's four 16-key slices.
      uint32_t pa[kBN / 16][4];
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) pack_a<T>(s[0], kk, pa[kk]);
      fence_accumulator(acc[0]);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk)
        wgmma_m64n64k16_rs<T, 1>(acc[0], pa[kk],
                                 sw128_descriptor(vS + uint32_t(kk * 16 * 128), 16));
      wgmma_commit();
      wgmma_wait_all();
      fence_accumulator(acc[0]);
    }
    stage ^= 1;
    kt = kt_next;
  }
  cp_async_wait_all();  // nothing may be in flight when the block exits

  uint16_t* o = p.o_head<uint16_t>(b, h);
  float* lse = p.lse_row<float>(b, h);
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
  auto kernel = forward_kernel<T, D>;
  set_smem_limit(kernel, Cfg::kSmem);
  const dim3 grid(unsigned((p.Nq + Cfg::kBM - 1) / Cfg::kBM), unsigned(p.Hq), unsigned(p.B));
  kernel<<<grid, Cfg::kThreads, Cfg::kSmem, stream>>>(p);
  FG_LAUNCH_CHECK();
}

}  // namespace sm90
}  // namespace attn
}  // namespace fg
