// Tensor-core FlashAttention-2 backward for bf16 / fp16 (mma.sync m16n8k16, sm_80 and later),
// and its launcher run_attention_tc_backward<T, D>.
//
// Included only by kernels/attention/instantiations/attention_tc_backward_*.cu (one dtype and
// head dim per file); attention_cuda.cu picks it under the same conditions as the tensor-core
// forward (plus aligned dO, dQ, dK, dV). It computes the backward of params.h exactly (same mask
// rule, same dropout bits), so the tests hold it to the double-precision reference, the SIMT
// backward and the gradient check.
//
// Launches (the first and last are the SIMT path's, attention_kernels.cuh):
//   1. attention_bwd_dot_kernel: D_i = rowsum(dO * O) in fp32 into the workspace.
//   2. attention_tc_bwd_dkdv_kernel (below): dK, dV, and dQ contributions added with fp32
//      atomics into the workspace accumulator (unless params.deterministic).
//   3. attention_bwd_dq_convert_kernel (accumulator -> dQ), or, when deterministic,
//      attention_tc_bwd_dq_kernel (below), which sums dQ in a fixed order without atomics.
//
// dK/dV kernel, FlashAttention-2 partitioning: one block per (key tile of kBN = 16 kWarps keys,
// kv head, batch); warp w owns keys 16w..16w+15 of the tile for the whole loop, so dK and dV
// stay in its registers and need no reduction. K and V are loaded once; the block walks the
// query heads of its GQA group and their query tiles of kBM rows (from the first one the causal
// diagonal lets see the key tile), streaming Q, dO, LSE and D_i through two cp.async stages.
// Per query tile and warp, in the transposed orientation (rows = the warp's keys j, columns =
// the tile's queries i):
//   S^T  = K Q^T,  dP^T = V dO^T                 (mma; A = K, V rows; B = Q, dO rows)
//   P^T  = exp2(S^T * scale * log2 e - LSE_i * log2 e)   (masked and padded entries -> 0)
//   Z    = keep bits of attention_dropout_keep, scaled by 1 / (1 - p)
//   dS^T = scale * P^T (dP^T Z - D_i)
//   dV  += (P^T Z) dO,   dK += dS^T Q            (A re-packed from the accumulators; B = dO, Q
//                                                 through ldmatrix.trans)
// and then, with every warp's dS^T in shared memory (bf16, double-buffered, so the step runs
// one iteration late, after the barrier that starts the next one), the block's dQ contribution
// dS K for the kBM query rows: warp w takes a 16-row strip and a slice of the head dim (A = dS
// through ldmatrix.trans of the stored dS^T, B = K through ldmatrix.trans), and adds it to the
// fp32 accumulator with 8-byte atomics (float2, sm_90; 16-byte ones measured slower) or 4-byte
// ones before sm_90.
//
// Hopper variant (kWgmma, D = 64 and 128, picked when the device is sm_90): a warpgroup's 64 keys
// are one m64 tile, so S^T, dP^T (A = K, V rows, B = Q, dO tiles, all K-major) and dV, dK (A =
// P^T, dS^T from registers, B = dO, Q through MN-major descriptors) are m64n64k16 wgmma, reading
// each Q and dO tile once per warpgroup instead of once per warp. The tiles are stored as 64-column
// blocks of 128-byte rows (load_tile_async's kBlocked; the plain layout at D = 64), the
// hardware's 128-byte swizzle; at D = 128, dV and dK are two m64n64 accumulators each. The
// accumulator layout is the same as the mma.sync one, so the elementwise steps and the dQ
// atomics are shared. The dQ step is wgmma too: warpgroup w forms columns w D/2 .. of dS K (m64,
// n = D/2, k = the block's keys) with A = dS read from the stored dS^T as an MN-major operand
// and B = the K rows, MN-major. Skipping becomes warpgroup-wide (a warp inside a visible
// warpgroup is at worst fully masked).
//
// Dropout in the transposed layout: a thread holds keys g, g+8 (of the warp's 16) and queries
// 2t, 2t+1 of each 8-query column tile. attention_dropout_keep draws four consecutive keys of
// one query with one Philox call; those four keys sit in lanes 4r + t + 16a (r = 0..3) of rows
// g = 4a + r. Per column tile, those four lanes need exactly four calls (key groups a, a+2 x
// queries 2t, 2t+1): lane r makes call r and a 4 x 4 transpose by three xor-shuffles hands
// each lane its word of each call (element e of lane r is word r of call e).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/attention/attention.h"
#include "kernels/attention/simt/backward.cuh"
#include "kernels/attention/common/tc.cuh"
#include "kernels/attention/sm80/forward.cuh"  // the shared score-tile steps
#include "kernels/attention/common/wgmma.cuh"
#include "kernels/attention/params.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/cuda_check.h"
#include "core/error.h"

namespace fg {
namespace attn {
namespace tc {

// ---------------------------------------------------------------------------------------------
// Configuration: kWarps warps (kBN = 16 kWarps keys per block), query tiles of kBM rows, and
// whether each warp keeps its K and V fragments in registers for the whole loop (D = 64 has the
// registers for it; D = 128 reloads them from shared memory).

template <int D> struct TcBwdConfig {
  static constexpr int kWarps = 8;
  static constexpr int kBM = 64;
  static constexpr bool kKeepKV = D == 64;
};

template <int D, int kBN, int kBM> constexpr size_t tc_backward_smem_bytes() {
  // K, V; two stages of Q, dO and dS^T; two stages of LSE and D_i; 1 KB alignment slack.
  return sizeof(uint16_t) * size_t(2 * kBN * D + 2 * 2 * kBM * D + 2 * kBN * kBM) +
         sizeof(float) * size_t(2 * 2 * kBM) + 1024;
}

FG_TC_DEV uint32_t pick4(const Philox4& r, uint32_t i) {
  return i == 0 ? r.x[0] : i == 1 ? r.x[1] : i == 2 ? r.x[2] : r.x[3];
}

// dq[0..1] += (a, b) at an 8-byte aligned address of global memory.
FG_TC_DEV void atomic_add_f32x2(float* dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(dst), make_float2(a, b));
#else
  atomicAdd(dst, a);
  atomicAdd(dst + 1, b);
#endif
}

// ---------------------------------------------------------------------------------------------
// The dK / dV (+ atomic dQ) kernel

template <typename T, int D, int kWarps, int kBM, bool kKeepKV, bool kAtomicDq, bool kWgmma>
__global__ void __launch_bounds__(kWarps * 32, 1)
    attention_tc_bwd_dkdv_kernel(const AttentionParams p, const float* __restrict__ Di,
                                 float* __restrict__ dq_accum) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kBN = kWarps * 16;  // keys per block, 16 per warp
  constexpr int kNT = kBM / 8;      // 8-query column tiles of S^T
  constexpr int kDT = D / 8;        // 8-dim column tiles of dK, dV
  constexpr uint32_t kTileK = kBN * D * 2, kTileQ = kBM * D * 2;
  // Shared tiles: rows of D elements, or with wgmma 64-column blocks of 128-byte rows (the same
  // at D = 64; load_tile_async's kBlocked), kBlkK / kBlkQ bytes apart in K, V / Q, dO tiles.
  constexpr uint32_t kRowBytes = kWgmma ? 128 : D * 2;
  constexpr uint32_t kBlkK = kBN * 128, kBlkQ = kBM * 128;
  constexpr uint32_t kDsRowBytes = kBM * 2;
  // dQ partition: kBM / 16 strips of 16 query rows x kDqSplit slices of the head dim.
  constexpr int kDqStrips = kBM / 16, kDqSplit = kWarps / kDqStrips, kDqDims = D / kDqSplit;
  static_assert(kBM == 64, "dS^T rows must be 128 bytes (8 swizzled 16-byte chunks)");
  static_assert(kWarps % kDqStrips == 0 && kDqDims % 16 == 0, "dQ partition");
  // A warp's 16 keys and a query tile each lie inside one 64 x 64 block-mask tile, so inside a
  // non-empty (warp, query tile) pair the mask is only causal + bounds.
  static_assert(kBlockMaskTileQ % kBM == 0 && kBlockMaskTileK % 16 == 0, "block-mask tiles");
  // wgmma: a warpgroup's 64 keys form one m64 tile; needs 64-column blocks (D = 64, 128), the
  // keys of a warpgroup inside one block-mask tile, and K, V from shared memory (not registers).
  static_assert(!kWgmma || (D % 64 == 0 && kWarps % 4 == 0 && kBlockMaskTileK % 64 == 0 && !kKeepKV),
                "wgmma backward shape");
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if constexpr (kWgmma) {
    __trap();  // built without sm_90a code; the launcher never picks this kernel then
    return;
  }
#endif

  extern __shared__ __align__(128) unsigned char tc_smem[];
  const uint32_t base = smem_u32(tc_smem);
  const uint32_t sK = align1024(base);
  const uint32_t sV = sK + kTileK;
  const uint32_t sQ = sV + kTileK;     // 2 stages
  const uint32_t sdO = sQ + 2 * kTileQ;  // 2 stages
  const uint32_t sdS = sdO + 2 * kTileQ;  // 2 stages
  const uint32_t sL = sdS + 2 * kBN * kDsRowBytes;  // float LSE [2][kBM], then D_i [2][kBM]
  const float* pL = reinterpret_cast<const float*>(tc_smem + (sL - base));
  const float* pD = pL + 2 * kBM;

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int64_t k0 = int64_t(blockIdx.x) * kBN, hk = blockIdx.y, b = blockIdx.z;
  const int64_t k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
  const int64_t G = p.Hq / p.Hkv;
  const int64_t nqt = (p.Nq + kBM - 1) / kBM;

  const uint16_t* k = static_cast<const uint16_t*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const float* lse_g = static_cast<const float*>(p.lse);

  const float scale = float(p.softmax_scale);
  const SoftmaxDropout sd(p);

  // The loop runs over the query tiles qt of the query heads hk * G + gi, gi = 0 .. G - 1, in
  // that order; gi = G is the end. Causal: query row i sees key k0 only if i >= k0 - (Nk - Nq),
  // so earlier tiles are skipped. (The position is stepped, not divided out of a flat index:
  // 64-bit divisions cost as much as a tile's elementwise work.)
  int64_t qt_first = 0;
  if (p.causal) {
    const int64_t i0 = k0 - (p.Nk - p.Nq);
    qt_first = i0 > 0 ? i0 / kBM : 0;
  }
  struct QTile {
    int64_t gi, qt;
  };
  auto next_visible = [&](QTile x) {
    while (x.gi < G) {
      if (x.qt < qt_first) x.qt = qt_first;
      if (x.qt >= nqt) {
        ++x.gi, x.qt = qt_first;
        continue;
      }
      const int64_t q0 = x.qt * kBM, q1 = q0 + kBM < p.Nq ? q0 + kBM : p.Nq;
      if (tile_visibility(p, hk * G + x.gi, q0, q1, k0, k1) != TileVisibility::empty) break;
      ++x.qt;
    }
    return x;
  };
  auto load_query_tile = [&](QTile x, int st) {
    const int64_t h = hk * G + x.gi, q0 = x.qt * kBM;
    const uint16_t* q = static_cast<const uint16_t*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const uint16_t* dO = static_cast<const uint16_t*>(p.do_) + b * p.do_batch_stride + h * p.do_head_stride;
    load_tile_async<D, kBM, kThreads, kWgmma>(sQ + st * kTileQ, q, p.q_seq_stride, q0, p.Nq);
    load_tile_async<D, kBM, kThreads, kWgmma>(sdO + st * kTileQ, dO, p.do_seq_stride, q0, p.Nq);
    if (tid < 2 * kBM) {  // LSE and D_i of the tile's rows; zero past Nq
      const int r = tid % kBM;
      const bool is_di = tid >= kBM;
      const int64_t row = (b * p.Hq + h) * p.Nq + q0 + r;
      const bool valid = q0 + r < p.Nq;
      const float* src = is_di ? Di + (valid ? row : 0) : lse_g + (valid ? row : 0);
      cp_async_4(sL + uint32_t(((is_di ? 2 : 0) + st) * kBM * 4 + r * 4), src, valid ? 4 : 0);
    }
  };

  load_tile_async<D, kBN, kThreads, kWgmma>(sK, k, p.k_seq_stride, k0, p.Nk);
  load_tile_async<D, kBN, kThreads, kWgmma>(sV, v, p.v_seq_stride, k0, p.Nk);
  QTile it = next_visible(QTile{0, 0});
  if (it.gi < G) load_query_tile(it, 0);
  cp_async_commit();

  // Per-lane ldmatrix offsets at head-dim (or query) chunk 0/1; the swizzle makes chunk
  // c0 + 2s one XOR of (s << 5) away (see attention_tc_common.cuh).
  //   A from K/V rows of this warp:       rows 16 warp + (lane & 15), chunk lane >> 4
  //   B from Q/dO rows (n = query):       rows (lane & 7) + 8 (lane >> 4), chunk (lane >> 3) & 1
  //   B.trans from Q/dO/K rows (k = row): rows (lane & 7) + 8 ((lane >> 3) & 1), chunk lane >> 4
  //   A.trans from dS^T (m = query):      rows (lane & 7) + 8 (lane >> 4), chunk (lane >> 3) & 1
  const uint32_t aLane = uint32_t((warp * 16 + (lane & 15)) * kRowBytes +
                                  (((lane >> 4) ^ (lane & 7)) << 4));
  const uint32_t bLane = uint32_t(((lane & 7) + ((lane >> 4) << 3)) * kRowBytes +
                                  ((((lane >> 3) & 1) ^ (lane & 7)) << 4));
  const uint32_t tLane = uint32_t(((lane & 7) + (((lane >> 3) & 1) << 3)) * kRowBytes +
                                  (((lane >> 4) ^ (lane & 7)) << 4));
  const uint32_t dsLane = uint32_t(((lane & 7) + ((lane >> 4) << 3)) * kDsRowBytes +
                                   ((((lane >> 3) & 1) ^ (lane & 7)) << 4));

  // dQ[q0 + 16 strip .., kDqDims slice] += dS K over the block's kBN keys, from the dS^T of
  // stage `st` (query head h, query tile at q0). Runs one iteration late, after the barrier that
  // already starts the next one, so the loop needs a single __syncthreads per query tile.
  auto dq_step = [&](int st, int64_t h, int64_t q0) {
    const int strip = warp % kDqStrips, split = warp / kDqStrips;
    const uint32_t sdSs = sdS + uint32_t(st) * kBN * kDsRowBytes;
    float dq[kDqDims / 8][4];
#pragma unroll
    for (int n = 0; n < kDqDims / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) dq[n][e] = 0.f;
    if constexpr (kWgmma) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
      // Warpgroup `split` computes dQ[:, split kDqDims ..] (64 x kDqDims, k = the kBN keys) with
      // A = dS from the stored dS^T (MN-major: 64 queries per 128-byte row) and B = K rows
      // (MN-major); its warps hold rows 16 strip .. of the result, as in the mma.sync split.
      const uint32_t kB = sK + uint32_t(split) * (kDqDims == 64 ? kBlkK : uint32_t(kDqDims * 2));
      static_assert(kDqDims == 32 || kDqDims == 64, "wgmma dQ step: n32 or n64");
      fence_accumulator(dq);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        const uint64_t da = sw128_descriptor(sdSs + uint32_t(kk * 16) * kDsRowBytes, 16);
        const uint64_t db = sw128_descriptor(kB + uint32_t(kk * 16) * kRowBytes, 16);
        if constexpr (kDqDims == 32) wgmma_m64n32k16_ss<T, 1, 1>(dq, da, db);
        else wgmma_m64n64k16_ss<T, 1, 1>(dq, da, db);
      }
      wgmma_commit();
      wgmma_wait_all();
      fence_accumulator(dq);
#endif
    } else {
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4_trans(a, ((sdSs + dsLane) ^ uint32_t(strip << 5)) + kk * 16 * kDsRowBytes);
#pragma unroll
      for (int dpi = 0; dpi < kDqDims / 16; ++dpi) {
        const int dglob = split * (kDqDims / 16) + dpi;
        uint32_t bk[4];
        ldmatrix_x4_trans(bk, ((sK + tLane) ^ uint32_t(dglob << 5)) + kk * 16 * kRowBytes);
        mma_16816<T>(dq[2 * dpi], a, bk[0], bk[1]);
        mma_16816<T>(dq[2 * dpi + 1], a, bk[2], bk[3]);
      }
    }
    }
    float* dqh = dq_accum + (b * p.Hq + h) * p.Nq * D;
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int64_t i = q0 + strip * 16 + g + 8 * hr;
      if (i >= p.Nq) continue;
#pragma unroll
      for (int n = 0; n < kDqDims / 8; ++n)
        atomic_add_f32x2(dqh + i * D + split * kDqDims + n * 8 + 2 * t, dq[n][2 * hr],
                         dq[n][2 * hr + 1]);
    }
  };

  float dk[kDT][4], dv[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[dt][e] = 0.f, dv[dt][e] = 0.f;
  // K and V A-fragments of the warp's keys (kept when kKeepKV).
  uint32_t kf[kKeepKV ? D / 16 : 1][4], vf[kKeepKV ? D / 16 : 1][4];
  bool kv_in_regs = false;

  const int64_t kw0 = k0 + warp * 16, kw1 = kw0 + 16 < p.Nk ? kw0 + 16 : p.Nk;
  const uint32_t r4 = uint32_t(lane >> 2) & 3u, a4 = uint32_t(lane >> 4);
  int stage = 0;
  int64_t prev_h = -1, prev_q0 = 0;  // the query tile whose dQ step is still due

  while (it.gi < G) {
    cp_async_wait_all();
    if constexpr (kWgmma) fence_proxy_async();  // the copies and dS^T stores, visible to wgmma
    __syncthreads();  // tile `it` (and K, V) in; every warp done with the previous iteration
    const QTile it_next = next_visible(QTile{it.gi, it.qt + 1});
    if (it_next.gi < G) load_query_tile(it_next, stage ^ 1);
    cp_async_commit();
    if constexpr (kAtomicDq) {
      if (prev_h >= 0) dq_step(stage ^ 1, prev_h, prev_q0);
    }

    if constexpr (kKeepKV) {
      if (!kv_in_regs) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          ldmatrix_x4(kf[ks], (sK + aLane) ^ uint32_t(ks << 5));
          ldmatrix_x4(vf[ks], (sV + aLane) ^ uint32_t(ks << 5));
        }
        kv_in_regs = true;
      }
    }

    const int64_t h = hk * G + it.gi, q0 = it.qt * kBM;
    const int64_t q1 = q0 + kBM < p.Nq ? q0 + kBM : p.Nq;
    const uint32_t sQs = sQ + uint32_t(stage) * kTileQ, sdOs = sdO + uint32_t(stage) * kTileQ;
    const float* lse_s = pL + stage * kBM;
    const float* di_s = pD + stage * kBM;
    const TileVisibility wvis =
        kw0 < p.Nk ? tile_visibility(p, h, q0, q1, kw0, kw1) : TileVisibility::empty;
    // Whether this warp computes: its own pair, or with wgmma its warpgroup's 64 keys (one
    // block-mask tile, so a warp inside a visible warpgroup is at worst all masked).
    bool active = wvis != TileVisibility::empty;
    if constexpr (kWgmma) {
      const int64_t g0 = k0 + (warp / 4) * 64, g1 = g0 + 64 < p.Nk ? g0 + 64 : p.Nk;
      active = g0 < p.Nk && tile_visibility(p, h, q0, q1, g0, g1) != TileVisibility::empty;
    }

    if (active) {  // warp-uniform (warpgroup-uniform with wgmma)
      // S^T = K Q^T and dP^T = V dO^T, 16 keys x kBM queries each.
      float s[kNT][4], dp[kNT][4];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] = 0.f, dp[nt][e] = 0.f;
      if constexpr (kWgmma) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        // m64n64k16 per warpgroup: A = its 64 K (V) rows, B = the Q (dO) tile, both K-major;
        // step ks reads 16 columns of column block ks / 4.
        const uint32_t kA = sK + uint32_t((warp / 4) * 64) * kRowBytes;
        const uint32_t vA = sV + uint32_t((warp / 4) * 64) * kRowBytes;
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          const uint32_t ka = uint32_t(ks >> 2) * kBlkK + uint32_t((ks & 3) * 32);
          const uint32_t qa = uint32_t(ks >> 2) * kBlkQ + uint32_t((ks & 3) * 32);
          wgmma_m64n64k16_ss<T, 0>(s, sw128_descriptor(kA + ka, 16), sw128_descriptor(sQs + qa, 16));
          wgmma_m64n64k16_ss<T, 0>(dp, sw128_descriptor(vA + ka, 16), sw128_descriptor(sdOs + qa, 16));
        }
        wgmma_commit();
        wgmma_wait_all();
        fence_accumulator(s);
        fence_accumulator(dp);
#endif
      } else {
  #pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          uint32_t ak[4], av[4];
          if constexpr (kKeepKV) {
  #pragma unroll
            for (int e = 0; e < 4; ++e) ak[e] = kf[ks][e], av[e] = vf[ks][e];
          } else {
            ldmatrix_x4(ak, (sK + aLane) ^ uint32_t(ks << 5));
            ldmatrix_x4(av, (sV + aLane) ^ uint32_t(ks << 5));
          }
  #pragma unroll
          for (int np = 0; np < kNT / 2; ++np) {
            uint32_t bq[4], bo[4];
            ldmatrix_x4(bq, ((sQs + bLane) ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
            ldmatrix_x4(bo, ((sdOs + bLane) ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
            mma_16816<T>(s[2 * np], ak, bq[0], bq[1]);
            mma_16816<T>(s[2 * np + 1], ak, bq[2], bq[3]);
            mma_16816<T>(dp[2 * np], av, bo[0], bo[1]);
            mma_16816<T>(dp[2 * np + 1], av, bo[2], bo[3]);
          }
        }
      }

      // Mask where this (warp, query tile) pair is partial or runs past Nk or Nq: key j (row
      // g + 8 hr) keeps query columns i with i < Nq and, if causal, i >= j - (Nk - Nq).
      if (wvis != TileVisibility::full || kw0 + 16 > p.Nk || q0 + kBM > p.Nq) {
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          const int64_t j = kw0 + g + 8 * hr;
          int64_t lo = p.causal ? j - (p.Nk - p.Nq) - q0 : 0;
          int64_t hi = j < p.Nk ? p.Nq - q0 : 0;
          lo = lo < 0 ? 0 : (lo > kBM ? kBM : lo);
          hi = hi < 0 ? 0 : (hi > kBM ? kBM : hi);
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
              const int col = nt * 8 + 2 * t + c;
              if (col < lo || col >= hi) s[nt][2 * hr + c] = -INFINITY;
            }
        }
      }

      // P^T. A row with LSE = -inf sees no key: all its entries were masked, and taking
      // +inf for its LSE keeps exp2(-inf - inf) = 0 instead of NaN.
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        const float2 l = *reinterpret_cast<const float2*>(lse_s + nt * 8 + 2 * t);
        const float l0 = l.x == -INFINITY ? INFINITY : l.x * 1.4426950408889634f;
        const float l1 = l.y == -INFINITY ? INFINITY : l.y * 1.4426950408889634f;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          s[nt][2 * hr] = fast_exp2(fmaf(s[nt][2 * hr], sd.sl2, -l0));
          s[nt][2 * hr + 1] = fast_exp2(fmaf(s[nt][2 * hr + 1], sd.sl2, -l1));
        }
      }

      // dS^T = scale * P^T (dP^T Z - D_i), and P^T <- P^T Z for dV.
      const uint32_t ph = uint32_t(b) * uint32_t(p.Hq) + uint32_t(h);
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        float z[4] = {1.f, 1.f, 1.f, 1.f};
        if (sd.dropout) {
          const uint32_t grp = uint32_t(kw0 >> 2) + a4 + 2u * (r4 >> 1);
          const uint32_t i = uint32_t(q0 + nt * 8 + 2 * t) + (r4 & 1u);
          const Philox4 r = philox4x32_10(grp, i, ph, uint32_t(p.offset), sd.pk0, sd.pk1);
          uint32_t keep = uint32_t(pick4(r, r4) >= sd.threshold) << r4;
#pragma unroll
          for (uint32_t x = 1; x < 4; ++x) {
            const uint32_t recv = __shfl_xor_sync(0xffffffffu, pick4(r, r4 ^ x), int(x << 2));
            keep |= uint32_t(recv >= sd.threshold) << (r4 ^ x);
          }
#pragma unroll
          for (int e = 0; e < 4; ++e) z[e] = (keep >> e) & 1u ? sd.keep_scale : 0.f;
        }
        const float2 dd = *reinterpret_cast<const float2*>(di_s + nt * 8 + 2 * t);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float pv = s[nt][e];
          dp[nt][e] = scale * pv * (dp[nt][e] * z[e] - ((e & 1) ? dd.y : dd.x));
          s[nt][e] = pv * z[e];
        }
      }

      // dV += (P^T Z) dO and dK += dS^T Q: the accumulators of column tiles 2kk and 2kk+1
      // are the A fragment of a 16 x 16 block (keys x queries); B comes through ldmatrix.trans
      // (mma.sync) or an MN-major descriptor of the dO / Q tile (wgmma).
      auto pack_a = [&](const float (&x)[kNT][4], int kk, uint32_t (&a)[4]) {
        a[0] = pack2<T>(x[2 * kk][0], x[2 * kk][1]);
        a[1] = pack2<T>(x[2 * kk][2], x[2 * kk][3]);
        a[2] = pack2<T>(x[2 * kk + 1][0], x[2 * kk + 1][1]);
        a[3] = pack2<T>(x[2 * kk + 1][2], x[2 * kk + 1][3]);
      };
      // Keep dS^T (bf16/fp16, as the mma consumes it) for the dQ step: rows are keys, 16-byte
      // chunk nt of a row holds queries 8 nt .. 8 nt + 7.
      auto store_ds = [&](int kk, const uint32_t (&da)[4]) {
        if constexpr (kAtomicDq) {
#pragma unroll
          for (int half = 0; half < 2; ++half)
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
              const int nt = 2 * kk + half, row = warp * 16 + g + 8 * hr;
              st_shared_u32(sdS + uint32_t(stage) * kBN * kDsRowBytes +
                                uint32_t(row) * kDsRowBytes + uint32_t(((nt ^ (row & 7)) << 4) + 4 * t),
                            da[2 * half + hr]);
            }
        }
      };
      if constexpr (kWgmma) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        uint32_t pa[kBM / 16][4], da[kBM / 16][4];
#pragma unroll
        for (int kk = 0; kk < kBM / 16; ++kk) {
          pack_a(s, kk, pa[kk]);
          pack_a(dp, kk, da[kk]);
          store_ds(kk, da[kk]);
        }
        fence_accumulator(dv);
        fence_accumulator(dk);
        wgmma_fence();
        // One m64n64 accumulator per 64-column block of dV, dK (n8 tiles 8 cb .. 8 cb + 7).
#pragma unroll
        for (int kk = 0; kk < kBM / 16; ++kk)
#pragma unroll
          for (int cb = 0; cb < D / 64; ++cb) {
            const uint32_t rows = uint32_t(cb) * kBlkQ + uint32_t(kk * 16) * kRowBytes;
            wgmma_m64n64k16_rs<T, 1>(*reinterpret_cast<float(*)[8][4]>(&dv[8 * cb][0]), pa[kk],
                                     sw128_descriptor(sdOs + rows, 16));
            wgmma_m64n64k16_rs<T, 1>(*reinterpret_cast<float(*)[8][4]>(&dk[8 * cb][0]), da[kk],
                                     sw128_descriptor(sQs + rows, 16));
          }
        wgmma_commit();
        wgmma_wait_all();
        fence_accumulator(dv);
        fence_accumulator(dk);
#endif
      } else {
#pragma unroll
        for (int kk = 0; kk < kBM / 16; ++kk) {
          uint32_t pa[4], da[4];
          pack_a(s, kk, pa);
          pack_a(dp, kk, da);
          store_ds(kk, da);
#pragma unroll
          for (int dpi = 0; dpi < kDT / 2; ++dpi) {
            uint32_t bo[4], bq[4];
            ldmatrix_x4_trans(bo, ((sdOs + tLane) ^ uint32_t(dpi << 5)) + kk * 16 * kRowBytes);
            ldmatrix_x4_trans(bq, ((sQs + tLane) ^ uint32_t(dpi << 5)) + kk * 16 * kRowBytes);
            mma_16816<T>(dv[2 * dpi], pa, bo[0], bo[1]);
            mma_16816<T>(dv[2 * dpi + 1], pa, bo[2], bo[3]);
            mma_16816<T>(dk[2 * dpi], da, bq[0], bq[1]);
            mma_16816<T>(dk[2 * dpi + 1], da, bq[2], bq[3]);
          }
        }
      }
    } else if constexpr (kAtomicDq) {
      // Nothing visible to this warp: its keys contribute zero to dQ.
#pragma unroll
      for (int c = 0; c < 16 * int(kDsRowBytes) / 16 / 32; ++c)
        st_shared_zero16(sdS + uint32_t(stage) * kBN * kDsRowBytes +
                         uint32_t(warp * 16) * kDsRowBytes + uint32_t((c * 32 + lane) * 16));
    }
    prev_h = h, prev_q0 = q0;

    stage ^= 1;
    it = it_next;
  }
  cp_async_wait_all();  // nothing may be in flight when the block exits
  if constexpr (kAtomicDq) {
    if (prev_h >= 0) {
      if constexpr (kWgmma) fence_proxy_async();  // the dS^T stores, visible to wgmma's reads
      __syncthreads();  // every warp's dS^T of the last tile is in
      dq_step(stage ^ 1, prev_h, prev_q0);
    }
  }

  T* dkp = static_cast<T*>(p.dk) + b * p.dk_batch_stride + hk * p.dk_head_stride;
  T* dvp = static_cast<T*>(p.dv) + b * p.dv_batch_stride + hk * p.dv_head_stride;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t j = kw0 + g + 8 * hr;
    if (j >= p.Nk) continue;
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
      *reinterpret_cast<uint32_t*>(dkp + j * p.dk_seq_stride + dt * 8 + 2 * t) =
          pack2<T>(dk[dt][2 * hr], dk[dt][2 * hr + 1]);
      *reinterpret_cast<uint32_t*>(dvp + j * p.dv_seq_stride + dt * 8 + 2 * t) =
          pack2<T>(dv[dt][2 * hr], dv[dt][2 * hr + 1]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The deterministic dQ kernel: one block per (query tile of kBM = 16 kWarps rows, query head,
// batch), laid out like the forward (each warp owns 16 query rows, K and V tiles streamed
// through two cp.async stages, causal and block-mask tiles skipped). Per key tile and warp:
// S = Q K^T and dP = dO V^T (mma.sync), P = exp2(S sl2 - LSE log2 e), dP Z by the forward's
// dropout step, dS = scale P (dP Z - D_i), dQ += dS K with dS re-packed from the accumulators
// and K through ldmatrix.trans. dQ is summed in registers in a fixed order: no atomics, so the
// result is the same bit for bit from run to run.

template <int D, int kBM, int kBN> constexpr size_t tc_dq_smem_bytes() {
  // Q, dO, 2 stages of K and V, and 1 KB of slack to align the base to 1024 bytes.
  return sizeof(uint16_t) * size_t(2 * kBM * D + 2 * 2 * kBN * D) + 1024;
}

template <typename T, int D, int kWarps, int kBN>
__global__ void __launch_bounds__(kWarps * 32, 2)
    attention_tc_bwd_dq_kernel(const AttentionParams p, const float* __restrict__ Di) {
  constexpr int kThreads = kWarps * 32, kBM = kWarps * 16;
  constexpr int kNT = kBN / 8, kDT = D / 8;
  constexpr uint32_t kRowBytes = D * 2, kTileQ = kBM * D * 2, kStageBytes = kBN * D * 2;
  static_assert(kBlockMaskTileQ % 16 == 0 && kBlockMaskTileK % kBN == 0,
                "a warp's rows and a key tile must lie in one block-mask tile");

  extern __shared__ __align__(128) unsigned char tc_smem[];
  const uint32_t sQ = align1024(smem_u32(tc_smem));
  const uint32_t sdO = sQ + kTileQ;
  const uint32_t sK = sdO + kTileQ;  // 2 stages
  const uint32_t sV = sK + 2 * kStageBytes;  // 2 stages

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const ForwardTile<kBM, kBN> tile(p);
  const int64_t q0 = tile.q0, q1 = tile.q1, h = tile.h, b = tile.b, hk = tile.hk, nkt = tile.nkt;
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const uint16_t* dO = static_cast<const uint16_t*>(p.do_) + b * p.do_batch_stride + h * p.do_head_stride;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const SoftmaxDropout sd(p);
  const float scale = float(p.softmax_scale);
  const uint32_t ph = uint32_t(b) * uint32_t(p.Hq) + uint32_t(h);

  load_tile_async<D, kBM, kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);
  load_tile_async<D, kBM, kThreads>(sdO, dO, p.do_seq_stride, q0, p.Nq);
  cp_async_commit();
  auto next_visible = [&](int64_t kt) { return next_visible_key_tile<kBN>(p, h, q0, q1, nkt, kt); };
  int64_t kt = next_visible(0);
  if (kt < nkt) {
    load_tile_async<D, kBN, kThreads>(sK, k, p.k_seq_stride, kt * kBN, p.Nk);
    load_tile_async<D, kBN, kThreads>(sV, v, p.v_seq_stride, kt * kBN, p.Nk);
  }
  cp_async_commit();

  // This thread's rows g and g + 8 of the warp: LSE log2 e (+inf where the row sees no key or
  // lies past Nq, so that exp2(-inf - inf) = 0) and D_i.
  const int64_t wr0 = q0 + warp * 16, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;
  float l2[2], di[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = wr0 + g + 8 * hr;
    const int64_t row = (b * p.Hq + h) * p.Nq + i;
    const float lse = i < p.Nq ? static_cast<const float*>(p.lse)[row] : -INFINITY;
    l2[hr] = lse == -INFINITY ? INFINITY : lse * 1.4426950408889634f;
    di[hr] = i < p.Nq ? Di[row] : 0.f;
  }

  float acc[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[dt][e] = 0.f;

  // ldmatrix lane offsets as in the forward: A (Q, dO rows), B (K, V rows), B.trans (K rows).
  const uint32_t aLane = uint32_t((warp * 16 + (lane & 15)) * kRowBytes + (((lane >> 4) ^ (lane & 7)) << 4));
  const uint32_t bLane = uint32_t(((lane & 7) + ((lane >> 4) << 3)) * kRowBytes +
                                  ((((lane >> 3) & 1) ^ (lane & 7)) << 4));
  const uint32_t tLane = uint32_t(((lane & 7) + (((lane >> 3) & 1) << 3)) * kRowBytes +
                                  (((lane >> 4) ^ (lane & 7)) << 4));
  int stage = 0;

  while (kt < nkt) {
    cp_async_wait_all();
    __syncthreads();  // tile kt is in; every warp is done with the other stage
    const int64_t kt_next = next_visible(kt + 1);
    if (kt_next < nkt) {
      load_tile_async<D, kBN, kThreads>(sK + (stage ^ 1) * kStageBytes, k, p.k_seq_stride,
                                        kt_next * kBN, p.Nk);
      load_tile_async<D, kBN, kThreads>(sV + (stage ^ 1) * kStageBytes, v, p.v_seq_stride,
                                        kt_next * kBN, p.Nk);
    }
    cp_async_commit();

    const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
    const TileVisibility wvis =
        wr0 < p.Nq ? tile_visibility(p, h, wr0, wr1, k0, k1) : TileVisibility::empty;
    if (wvis != TileVisibility::empty) {  // warp-uniform
      const uint32_t kS = sK + stage * kStageBytes, vS = sV + stage * kStageBytes;
      float s[1][kNT][4], dp[1][kNT][4];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[0][nt][e] = 0.f, dp[0][nt][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t aq[4], ao[4];
        ldmatrix_x4(aq, (sQ + aLane) ^ uint32_t(ks << 5));
        ldmatrix_x4(ao, (sdO + aLane) ^ uint32_t(ks << 5));
#pragma unroll
        for (int np = 0; np < kNT / 2; ++np) {
          uint32_t bk[4], bv[4];
          ldmatrix_x4(bk, ((kS + bLane) ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
          ldmatrix_x4(bv, ((vS + bLane) ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
          mma_16816<T>(s[0][2 * np], aq, bk[0], bk[1]);
          mma_16816<T>(s[0][2 * np + 1], aq, bk[2], bk[3]);
          mma_16816<T>(dp[0][2 * np], ao, bv[0], bv[1]);
          mma_16816<T>(dp[0][2 * np + 1], ao, bv[2], bv[3]);
        }
      }
      if (wvis == TileVisibility::partial || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      if (sd.dropout) apply_dropout(dp, wr0, k0, g, t, ph, uint32_t(p.offset), sd);  // dP Z
      // dS = scale P (dP Z - D_i), in place of dp.
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int hr = e >> 1;
          const float pv = fast_exp2(fmaf(s[0][nt][e], sd.sl2, -l2[hr]));
          dp[0][nt][e] = scale * pv * (dp[0][nt][e] - di[hr]);
        }
      // dQ += dS K: the dS accumulators of key tiles 2kk, 2kk+1 are the A fragment of a 16 x 16
      // block; K comes through ldmatrix.trans (keys are the k dimension).
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        uint32_t a[4];
        a[0] = pack2<T>(dp[0][2 * kk][0], dp[0][2 * kk][1]);
        a[1] = pack2<T>(dp[0][2 * kk][2], dp[0][2 * kk][3]);
        a[2] = pack2<T>(dp[0][2 * kk + 1][0], dp[0][2 * kk + 1][1]);
        a[3] = pack2<T>(dp[0][2 * kk + 1][2], dp[0][2 * kk + 1][3]);
#pragma unroll
        for (int dpi = 0; dpi < kDT / 2; ++dpi) {
          uint32_t bk[4];
          ldmatrix_x4_trans(bk, ((kS + tLane) ^ uint32_t(dpi << 5)) + kk * 16 * kRowBytes);
          mma_16816<T>(acc[2 * dpi], a, bk[0], bk[1]);
          mma_16816<T>(acc[2 * dpi + 1], a, bk[2], bk[3]);
        }
      }
    }
    stage ^= 1;
    kt = kt_next;
  }
  cp_async_wait_all();  // nothing may be in flight when the block exits

  T* dq = static_cast<T*>(p.dq) + b * p.dq_batch_stride + h * p.dq_head_stride;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = wr0 + g + 8 * hr;
    if (i >= p.Nq) continue;
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
      *reinterpret_cast<uint32_t*>(dq + i * p.dq_seq_stride + dt * 8 + 2 * t) =
          pack2<T>(acc[dt][2 * hr], acc[dt][2 * hr + 1]);
  }
}

// ---------------------------------------------------------------------------------------------
// Launcher

template <typename T, int D, bool kWgmma>
void run_attention_tc_backward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  using Cfg = TcBwdConfig<D>;
  constexpr int kBN = Cfg::kWarps * 16;
  check_grid(p, "flash_attention_backward_cuda");
  const int64_t rows = p.B * p.Hq * p.Nq;
  float* Di = static_cast<float*>(p.workspace);
  float* dq_accum = reinterpret_cast<float*>(static_cast<unsigned char*>(p.workspace) +
                                             workspace_pad(size_t(rows) * sizeof(float)));

  // 1. D_i = rowsum(dO * O), 8 rows (warps) per block.
  simt::attention_bwd_dot_kernel<T, D><<<unsigned((rows + 7) / 8), 256, 0, stream>>>(p, Di);
  FG_LAUNCH_CHECK();

  // 2. dK, dV (and atomic dQ unless deterministic).
  const dim3 grid(unsigned((p.Nk + kBN - 1) / kBN), unsigned(p.Hkv), unsigned(p.B));
  constexpr size_t smem = tc_backward_smem_bytes<D, kBN, Cfg::kBM>();
  if (!p.deterministic) {
    FG_CUDA_CHECK(cudaMemsetAsync(dq_accum, 0, size_t(rows) * D * sizeof(float), stream));
    auto kernel = attention_tc_bwd_dkdv_kernel<T, D, Cfg::kWarps, Cfg::kBM, Cfg::kKeepKV && !kWgmma, true, kWgmma>;
    set_smem_limit(kernel, smem);
    kernel<<<grid, Cfg::kWarps * 32, smem, stream>>>(p, Di, dq_accum);
    FG_LAUNCH_CHECK();
    // 3a. accumulator -> dQ
    const int64_t n = rows * D;
    const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65535));
    simt::attention_bwd_dq_convert_kernel<T, D><<<blocks, 256, 0, stream>>>(p, dq_accum);
    FG_LAUNCH_CHECK();
  } else {
    auto kernel = attention_tc_bwd_dkdv_kernel<T, D, Cfg::kWarps, Cfg::kBM, Cfg::kKeepKV && !kWgmma, false, kWgmma>;
    set_smem_limit(kernel, smem);
    kernel<<<grid, Cfg::kWarps * 32, smem, stream>>>(p, Di, nullptr);
    FG_LAUNCH_CHECK();
    // 3b. dQ by query tiles in a fixed order, no atomics.
    constexpr int kDqWarps = 4, kDqBN = 64, kDqBM = kDqWarps * 16;
    auto dq_kernel = attention_tc_bwd_dq_kernel<T, D, kDqWarps, kDqBN>;
    constexpr size_t dq_smem = tc_dq_smem_bytes<D, kDqBM, kDqBN>();
    set_smem_limit(dq_kernel, dq_smem);
    const dim3 q_grid(unsigned((p.Nq + kDqBM - 1) / kDqBM), unsigned(p.Hq), unsigned(p.B));
    dq_kernel<<<q_grid, kDqWarps * 32, dq_smem, stream>>>(p, Di);
    FG_LAUNCH_CHECK();
  }
}

}  // namespace tc

namespace sm80 {
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  tc::run_attention_tc_backward<T, D, false>(p, stream);
}
}  // namespace sm80
}  // namespace attn
}  // namespace fg
