// Tensor-core FlashAttention forward for bf16 / fp16 on Hopper (wgmma, sm_90a), D = 64, and its
// launcher run_attention_wgmma_forward<T, D>. (At D = 128 this simple form, without overlap of
// softmax and wgmma inside a warpgroup, measured slower than the mma.sync kernel: 302-313 vs
// 325-328 TFLOP/s non-causal; D = 128 stays there.)
//
// Same algorithm, tile skipping, masking, dropout bits and output as the mma.sync forward of
// attention_tc_forward.cuh (whose shared steps it calls), with the two matrix products issued as
// warpgroup-wide wgmma: a block is two warpgroups (8 warps, 128 query rows), each owning 64 rows.
//   S = Q K^T:  m64n64k16, A = Q and B = K straight from shared memory (K-major descriptors),
//               so one read of a K tile serves the 64 rows of a warpgroup instead of 16;
//   O += P V:   m64n64k16, A = P from registers (the S accumulators re-packed, as in the mma.sync
//               kernel), B = V from shared memory through an MN-major descriptor.
// The shared tiles of load_tile_async are read by wgmma as they are (attention_wgmma_common.cuh
// says why, and how the descriptors address them).
//
// cp.async writes shared memory through the generic proxy and wgmma reads it through the async
// proxy, so each thread fences (fence.proxy.async) after its copies land and before the barrier.
//
// Used for D = 64 when the device is sm_90 and the build includes sm_90a code
// (FLASHGRAD_HAVE_SM90A), unless FLASHGRAD_ATTENTION_WGMMA=0 asks for the mma.sync kernel.
#pragma once
#include "kernels/attention/sm80/forward.cuh"
#include "kernels/attention/common/wgmma.cuh"

namespace fg {
namespace attn {
namespace tc {

// Warpgroups per block and blocks per SM (overridable with -D for experiments). Two blocks of
// two warpgroups per SM measured best: the blocks drift apart, so one block's softmax overlaps
// the other's wgmma (one block per SM, 2 warpgroups in lockstep behind its barriers: 211 vs 288
// TFLOP/s at N = 16384; one warpgroup per block, 4 blocks per SM: 268).
#ifndef FG_WGMMA_WG
#define FG_WGMMA_WG 2
#endif
#ifndef FG_WGMMA_MINB
#define FG_WGMMA_MINB 2
#endif
constexpr int kWgmmaBM = 64 * FG_WGMMA_WG, kWgmmaBN = 64, kWgmmaThreads = 128 * FG_WGMMA_WG;

template <int D> constexpr size_t wgmma_forward_smem_bytes() {
  // Q, 2 stages of K and V, and 1 KB of slack to align the base to 1024 bytes.
  return sizeof(uint16_t) * size_t(kWgmmaBM * D + 2 * 2 * kWgmmaBN * D) + 1024;
}

template <typename T, int D>
__global__ void __launch_bounds__(kWgmmaThreads, FG_WGMMA_MINB)
    attention_wgmma_forward_kernel(const AttentionParams p) {
  static_assert(D == 64, "D = 128 stays on the mma.sync kernel, which measured faster");
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kThreads = kWgmmaThreads, kBM = kWgmmaBM, kBN = kWgmmaBN;
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
  const ForwardTile<kBM, kBN> tile(p);
  const int64_t q0 = tile.q0, q1 = tile.q1, h = tile.h, b = tile.b, hk = tile.hk, nkt = tile.nkt;
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const SoftmaxDropout sd(p);
  const uint32_t ph = uint32_t(b) * uint32_t(p.Hq) + uint32_t(h);

  load_tile_async<D, kBM, kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);
  cp_async_commit();

  auto next_visible = [&](int64_t kt) { return next_visible_key_tile<kBN>(p, h, q0, q1, nkt, kt); };
  int64_t kt = next_visible(0);
  if (kt < nkt) {
    load_tile_async<D, kBN, kThreads>(sK, k, p.k_seq_stride, kt * kBN, p.Nk);
    load_tile_async<D, kBN, kThreads>(sV, v, p.v_seq_stride, kt * kBN, p.Nk);
  }
  cp_async_commit();

  float acc[1][kDT][4], m[1][2], l[1][2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) m[0][hr] = -INFINITY, l[0][hr] = 0.f;
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[0][dt][e] = 0.f;

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
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[0][nt][e] = 0.f;
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
      for (int kk = 0; kk < kBN / 16; ++kk) {
        pa[kk][0] = pack2<T>(s[0][2 * kk][0], s[0][2 * kk][1]);
        pa[kk][1] = pack2<T>(s[0][2 * kk][2], s[0][2 * kk][3]);
        pa[kk][2] = pack2<T>(s[0][2 * kk + 1][0], s[0][2 * kk + 1][1]);
        pa[kk][3] = pack2<T>(s[0][2 * kk + 1][2], s[0][2 * kk + 1][3]);
      }
      fence_accumulator(acc[0]);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk)
        wgmma_m64n64k16_rs<T, 1>(acc[0], pa[kk], sw128_descriptor(vS + uint32_t(kk * 16 * 128), 16));
      wgmma_commit();
      wgmma_wait_all();
      fence_accumulator(acc[0]);
    }
    stage ^= 1;
    kt = kt_next;
  }
  cp_async_wait_all();  // nothing may be in flight when the block exits

  uint16_t* o = static_cast<uint16_t*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
  float* lse = static_cast<float*>(p.lse) + (b * p.Hq + h) * p.Nq;
  finish_rows(acc, m, l, sd.sl2, p, lse, wr0, g, t, [&](int64_t i, int dt, float x0, float x1) {
    *reinterpret_cast<uint32_t*>(o + i * p.o_seq_stride + dt * 8 + 2 * t) = pack2<T>(x0, x1);
  });
#else
  __trap();  // built without sm_90a code; the launcher never picks this kernel then
#endif
}

template <typename T, int D> void run_attention_wgmma_forward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  FG_CHECK(p.B <= 65535 && p.Hq <= 65535, "flash_attention_forward_cuda: B=", p.B, " and Hq=",
           p.Hq, " must each be at most 65535 (they are grid dimensions); split the batch");
  auto kernel = attention_wgmma_forward_kernel<T, D>;
  constexpr size_t smem = wgmma_forward_smem_bytes<D>();
  FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned((p.Nq + kWgmmaBM - 1) / kWgmmaBM), unsigned(p.Hq), unsigned(p.B));
  kernel<<<grid, kWgmmaThreads, smem, stream>>>(p);
  FG_LAUNCH_CHECK();
}

}  // namespace tc

namespace sm90 {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  tc::run_attention_wgmma_forward<T, D>(p, stream);
}
}  // namespace sm90
}  // namespace attn
}  // namespace fg
