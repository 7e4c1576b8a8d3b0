// Tensor-core backward for bf16 / fp16 on Hopper (wgmma, sm_90a), D in {64, 128}, and its
// launcher sm90::run_backward<T, D>: the dK/dV block of sm80/backward_dkdv.cuh with wgmma
// products, and the mma.sync dQ kernel of sm80/backward.cuh in deterministic mode.
//
// A warpgroup's 64 keys are one m64 tile, so S^T, dP^T (A = K, V rows, B = Q, dO tiles, all
// K-major) and dV, dK (A = P^T, dS^T from registers, B = dO, Q through MN-major descriptors) are
// m64n64k16 wgmma, reading each Q and dO tile once per warpgroup instead of once per warp. At
// D = 128, dV and dK are two m64n64 accumulators each. The accumulator layout is the mma.sync
// one, so the elementwise steps and the dQ atomics are shared. The dQ step is wgmma too:
// warpgroup w forms columns w D/2 .. of dS K (m64, n = D/2, k = the block's keys) with A = dS
// read from the stored dS^T as an MN-major operand and B = the K rows, MN-major. Skipping is
// warpgroup-wide (a warp inside a visible warpgroup is at worst fully masked).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/env.h"
#include "kernels/attention/common/wgmma.cuh"
#include "kernels/attention/sm80/backward.cuh"

namespace fg {
namespace attn {
namespace sm90 {

// How the block adds its dQ contributions (in the order of FLASHGRAD_BWD_DQ's choices):
// kDqAtomic, an atomic per pair of elements;
// kDqBulk, through shared memory and one bulk reduction per query tile (sm80::dq_step);
// kDqOverlap, the same with the dQ product of the previous query tile issued before and
// finished after the elementwise steps of the current one (sm80::dkdv_block).
enum DqMode { kDqAtomic = 0, kDqBulk = 1, kDqOverlap = 2 };

template <typename T, int D, int kDqMode> struct WgmmaProducts {
  using S = sm80::DkdvShape<D, true>;
  static constexpr bool kBulkDq = kDqMode != kDqAtomic, kOverlapDq = kDqMode == kDqOverlap;
  static constexpr int kNT = S::kNT, kDT = S::kDT;
  static constexpr uint32_t kRowBytes = S::kRowBytes;
  static_assert(D % 64 == 0 && S::kWarps % 4 == 0 && kBlockMaskTileK % 64 == 0,
                "a warpgroup's 64 keys form one m64 tile inside one block-mask tile");
  FG_ATTN_DEV WgmmaProducts(int, int, int = 0) {}  // (warp, lane, part: the rows are whole)

  // Whether the warp's warpgroup (64 keys, inside one block-mask tile) sees the query tile.
  FG_ATTN_DEV bool active(const AttentionParams& p, int64_t h, int64_t q0, int64_t q1, int64_t k0,
                          int warp, TileVisibility) const {
    const int64_t g0 = k0 + (warp / 4) * 64, g1 = g0 + 64 < p.Nk ? g0 + 64 : p.Nk;
    return g0 < p.Nk && tile_visibility(p, h, q0, q1, g0, g1) != TileVisibility::empty;
  }
  FG_ATTN_DEV void begin_tile(const S&) {}

  // S^T, dP^T: m64n64k16 per warpgroup, A = its 64 K (V) rows, B = the Q (dO) tile, both
  // K-major; step ks reads 16 columns of column block ks / 4.
  FG_ATTN_DEV void scores(float (&s)[kNT][4], float (&dp)[kNT][4], const S& sm, uint32_t sQs,
                          uint32_t sdOs, int warp) const {
    scores_issue(s, dp, sm, sQs, sdOs, warp);
    wgmma_wait_all();
    fence_accumulator(s);
    fence_accumulator(dp);
  }
  // The same products issued and committed as one group, not waited for (the pipelined
  // warp-specialised backward, sm90ws/backward.cuh).
  FG_ATTN_DEV void scores_issue(float (&s)[kNT][4], float (&dp)[kNT][4], const S& sm,
                                uint32_t sQs, uint32_t sdOs, int warp) const {
    const uint32_t kA = sm.sK + uint32_t((warp / 4) * 64) * kRowBytes;
    const uint32_t vA = sm.sV + uint32_t((warp / 4) * 64) * kRowBytes;
    // The callers' zeroing of s and dp stays before the first product (otherwise the compiler
    // may sink the zeroing of dp past the S^T wgmma, and ptxas then serialises the two).
    fence_accumulator(s);
    fence_accumulator(dp);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const uint32_t ka = uint32_t(ks >> 2) * S::kBlkK + uint32_t((ks & 3) * 32);
      const uint32_t qa = uint32_t(ks >> 2) * S::kBlkQ + uint32_t((ks & 3) * 32);
      wgmma_m64n64k16_ss<T, 0>(s, sw128_descriptor(kA + ka, 16), sw128_descriptor(sQs + qa, 16));
      wgmma_m64n64k16_ss<T, 0>(dp, sw128_descriptor(vA + ka, 16), sw128_descriptor(sdOs + qa, 16));
    }
    wgmma_commit();
  }

  // dV += (P^T Z) dO and dK += dS^T Q: A from registers, one m64n64 accumulator per 64-column
  // block of dV, dK (n8 tiles 8 cb .. 8 cb + 7), B through MN-major descriptors.
  template <typename StoreDs>
  FG_ATTN_DEV void dv_dk(float (&dv)[kDT][4], float (&dk)[kDT][4], const float (&s)[kNT][4],
                         const float (&dp)[kNT][4], uint32_t sQs, uint32_t sdOs,
                         StoreDs store) const {
    uint32_t pa[S::kBM / 16][4], da[S::kBM / 16][4];
#pragma unroll
    for (int kk = 0; kk < S::kBM / 16; ++kk) {
      pack_a<T>(s, kk, pa[kk]);
      pack_a<T>(dp, kk, da[kk]);
      store(kk, da[kk]);
    }
    dv_dk_issue(dv, dk, pa, da, sQs, sdOs);
    wgmma_wait_all();
    fence_accumulator(dv);
    fence_accumulator(dk);
  }
  // The same products from A fragments packed by the caller, issued and committed as one
  // group, not waited for: pa and da must stay untouched until the wait (fence_operand).
  FG_ATTN_DEV void dv_dk_issue(float (&dv)[kDT][4], float (&dk)[kDT][4],
                               const uint32_t (&pa)[S::kBM / 16][4],
                               const uint32_t (&da)[S::kBM / 16][4], uint32_t sQs,
                               uint32_t sdOs) const {
    fence_accumulator(dv);
    fence_accumulator(dk);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < S::kBM / 16; ++kk)
#pragma unroll
      for (int cb = 0; cb < D / 64; ++cb) {
        const uint32_t rows = uint32_t(cb) * S::kBlkQ + uint32_t(kk * 16) * kRowBytes;
        wgmma_m64n64k16_rs<T, 1>(*reinterpret_cast<float(*)[8][4]>(&dv[8 * cb][0]), pa[kk],
                                 sw128_descriptor(sdOs + rows, 16));
        wgmma_m64n64k16_rs<T, 1>(*reinterpret_cast<float(*)[8][4]>(&dk[8 * cb][0]), da[kk],
                                 sw128_descriptor(sQs + rows, 16));
      }
    wgmma_commit();
  }

  // The same products with both A operands from shared memory: P^T and dS^T stored as the
  // dS^T tile is (store_ds: rows = keys, 128-byte swizzled rows of 64 queries, K-major for A),
  // the warpgroup's 64 rows from 64 wg; issued and committed as one group, not waited for.
  // (The pipelined warp-specialised backward: no A fragments held in registers while the
  // products run.)
  FG_ATTN_DEV void dv_dk_issue_ss(float (&dv)[kDT][4], float (&dk)[kDT][4], uint32_t sPs,
                                  uint32_t sdSs, int wg, uint32_t sQs, uint32_t sdOs) const {
    const uint32_t rows0 = uint32_t(wg * 64) * S::kDsRowBytes;
    fence_accumulator(dv);
    fence_accumulator(dk);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < S::kBM / 16; ++kk) {
      const uint64_t pa = sw128_descriptor(sPs + rows0 + uint32_t(kk * 32), 16);
      const uint64_t da = sw128_descriptor(sdSs + rows0 + uint32_t(kk * 32), 16);
#pragma unroll
      for (int cb = 0; cb < D / 64; ++cb) {
        const uint32_t rows = uint32_t(cb) * S::kBlkQ + uint32_t(kk * 16) * kRowBytes;
        wgmma_m64n64k16_ss<T, 1>(*reinterpret_cast<float(*)[8][4]>(&dv[8 * cb][0]), pa,
                                 sw128_descriptor(sdOs + rows, 16));
        wgmma_m64n64k16_ss<T, 1>(*reinterpret_cast<float(*)[8][4]>(&dk[8 * cb][0]), da,
                                 sw128_descriptor(sQs + rows, 16));
      }
    }
    wgmma_commit();
  }

  // Warpgroup `split` computes dQ[:, split kDqDims ..] (64 x kDqDims, k = the kBN keys) with
  // A = dS from the stored dS^T (MN-major: 64 queries per 128-byte row) and B = K rows
  // (MN-major); its warps hold rows 16 strip .. of the result, as in the mma.sync split.
  FG_ATTN_DEV void dq(float (&dq)[S::kDqDims / 8][4], const S& sm, uint32_t sdSs, int,
                      int split) const {
    dq_issue(dq, sm, sdSs, split);
    dq_finish(dq);
  }
  // dq in two halves: the products issued and committed, and the wait for them.
  FG_ATTN_DEV void dq_issue(float (&dq)[S::kDqDims / 8][4], const S& sm, uint32_t sdSs,
                            int split) const {
    constexpr int kDqDims = S::kDqDims;
    static_assert(kDqDims == 32 || kDqDims == 64, "wgmma dQ step: n32 or n64");
    const uint32_t kB =
        sm.sK + uint32_t(split) * (kDqDims == 64 ? S::kBlkK : uint32_t(kDqDims * 2));
    fence_accumulator(dq);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < S::kBN / 16; ++kk) {
      const uint64_t da = sw128_descriptor(sdSs + uint32_t(kk * 16) * S::kDsRowBytes, 16);
      const uint64_t db = sw128_descriptor(kB + uint32_t(kk * 16) * kRowBytes, 16);
      if constexpr (kDqDims == 32) wgmma_m64n32k16_ss<T, 1, 1>(dq, da, db);
      else wgmma_m64n64k16_ss<T, 1, 1>(dq, da, db);
    }
    wgmma_commit();
  }
  FG_ATTN_DEV void dq_finish(float (&dq)[S::kDqDims / 8][4]) const {
    wgmma_wait_all();
    fence_accumulator(dq);
  }

  // Warpgroup wg's own share of the block's dQ: dS[:, its 64 keys] K[its 64 keys, :] (m64,
  // n = D, k = 64; the warp-specialised backward's "own" form, sm90ws/backward.cuh), A = dS
  // from the stored dS^T rows 64 wg .. (MN-major), B = the same K rows (MN-major), one m64n64
  // accumulator per 64-column block of D; the warps hold rows 16 (warp % 4) .., as above.
  FG_ATTN_DEV void dq_own_keys(float (&dq)[D / 8][4], const S& sm, uint32_t sdSs, int wg) const {
    dq_own_keys_issue(dq, sm, sdSs, wg);
    wgmma_wait_all();
    fence_accumulator(dq);
  }
  FG_ATTN_DEV void dq_own_keys_issue(float (&dq)[D / 8][4], const S& sm, uint32_t sdSs,
                                     int wg) const {
    fence_accumulator(dq);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const uint32_t key = uint32_t(wg * 64 + kk * 16);
      const uint64_t da = sw128_descriptor(sdSs + key * S::kDsRowBytes, 16);
#pragma unroll
      for (int cb = 0; cb < D / 64; ++cb)
        wgmma_m64n64k16_ss<T, 1, 1>(
            *reinterpret_cast<float(*)[8][4]>(&dq[8 * cb][0]), da,
            sw128_descriptor(sm.sK + uint32_t(cb) * S::kBlkK + key * kRowBytes, 16));
    }
    wgmma_commit();
  }
};

template <typename T, int D, bool kAtomicDq, int kDqMode>
__global__ void __launch_bounds__(sm80::Config<D>::kBwdWarps * 32, 1)
    dkdv_kernel(const AttentionParams p, const float* __restrict__ Di,
                float* __restrict__ dq_accum) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(128) unsigned char tc_smem[];
  sm80::dkdv_block<T, D, WgmmaProducts<T, D, kDqMode>, kAtomicDq>(p, Di, dq_accum, tc_smem);
#else
  __trap();  // built without sm_90a code; the dispatcher never picks this kernel then
#endif
}

// dQ by atomics (kDqAtomic) unless FLASHGRAD_BWD_DQ names another mode: `bulk` (kDqBulk) or
// `overlap` (kDqOverlap). The bulk forms stay opt-in until a GPU run has checked and timed
// them (bench/NOTES-attention-backward.md). The deterministic backward has no dQ step here.
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  static const int mode = env_choice("FLASHGRAD_BWD_DQ", {"atomic", "bulk", "overlap"});
  using S = sm80::DkdvShape<D, true>;
  // The bulk reductions need a 16-byte aligned accumulator.
  const int m =
      p.deterministic || !BackwardWorkspace<float>(p).dq_accum_aligned16() ? kDqAtomic : mode;
  sm80::run_tc_backward<T, D>(
      p, stream,
      [m](auto atomic_dq) {
        constexpr bool kAtomic = decltype(atomic_dq)::value;
        if constexpr (!kAtomic) return dkdv_kernel<T, D, false, kDqAtomic>;
        else
          return m == kDqOverlap ? dkdv_kernel<T, D, true, kDqOverlap>
                 : m == kDqBulk  ? dkdv_kernel<T, D, true, kDqBulk>
                                 : dkdv_kernel<T, D, true, kDqAtomic>;
      },
      sm80::Config<D>::kBwdSmem + (m == kDqOverlap ? 2 : m == kDqBulk ? 1 : 0) * S::kDqTileBytes);
}

}  // namespace sm90
}  // namespace attn
}  // namespace fg
