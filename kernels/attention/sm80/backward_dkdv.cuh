// The dK/dV block of the tensor-core backward, as named steps. The mma.sync kernel (MmaProducts,
// here) and the wgmma one (sm90/backward.cuh) are this block with their own matrix products.
//
// FlashAttention-2 partitioning: one block per (key tile of kBN = 16 kWarps keys, kv head,
// batch); warp w owns keys 16w..16w+15 of the tile for the whole loop, so dK and dV stay in its
// registers and need no reduction. (At D = 256 two warps share each 16 keys, one half of the
// head dim each for dK and dV, and kBN = 8 kWarps: DkdvShape::kDSplit.) K and V are loaded
// once; the block walks the query heads of its GQA group and their query tiles of kBM rows
// (from the first one the causal diagonal lets see the key tile), streaming Q, dO, LSE and D_i through two cp.async stages. Per query tile
// and warp, in the transposed orientation (rows = the warp's keys j, columns = the queries i):
//   S^T  = K Q^T,  dP^T = V dO^T                            (Products::scores)
//   P^T  = exp2(S^T * scale * log2 e - LSE_i * log2 e)      (masked and padded entries -> 0)
//   Z    = keep bits of attention_dropout_keep, scaled by attention_dropout_keep_scale(p)
//   dS^T = scale * P^T (dP^T Z - D_i)
//   dV  += (P^T Z) dO,   dK += dS^T Q                       (Products::dv_dk)
// and then, with every warp's dS^T in shared memory (16-bit, double-buffered, so the step runs
// one iteration late, after the barrier that starts the next one: one __syncthreads per query
// tile), the block's dQ contribution dS K for the kBM query rows (Products::dq): warp w takes a
// 16-row strip and a kDqDims slice of the head dim, and adds it to the fp32 accumulator with
// 8-byte atomics (float2, sm_90) or 4-byte ones before sm_90.
#pragma once
#include <cstdint>

#include "kernels/attention/common/dropout.cuh"
#include "kernels/attention/common/mask.cuh"
#include "kernels/attention/common/mma.cuh"
#include "kernels/attention/common/softmax.cuh"
#include "kernels/attention/common/tiles.cuh"
#include "kernels/attention/common/tma.cuh"
#include "kernels/attention/sm80/config.cuh"

namespace fg {
namespace attn {
namespace sm80 {

// The shape and shared-memory layout of a dK/dV block; its tiles' rows are tile_dim(D) wide
// (D = 96 padded to 128, common/tiles.cuh). kWgmma: the K, V, Q, dO tiles are read
// by wgmma, so they are stored as 64-column blocks of 128-byte rows (load_tile_async's kBlocked;
// the same as the plain layout at D = 64), kBlkK / kBlkQ bytes apart, and every thread fences
// its shared-memory writes for the async proxy before the barrier that publishes them.
template <int D, bool kWgmma_> struct DkdvShape {
  static constexpr bool kWgmma = kWgmma_;
  static constexpr int kWarps = Config<D>::kBwdWarps, kThreads = kWarps * 32;
  static constexpr int kBM = Config<D>::kBwdBM;  // query rows per tile
  static constexpr int kBN = Config<D>::kBwdBN;  // keys per block, 16 per key strip
  // Warps per 16-key strip, each with D / kDSplit dims of dK and dV (warp w: strip
  // w % kStrips, part w / kStrips of the head dim).
  static constexpr int kDSplit = Config<D>::kBwdDSplit, kStrips = kWarps / kDSplit;
  static constexpr int kNT = kBM / 8;            // 8-query column tiles of S^T
  static constexpr int kDT = D / 8 / kDSplit;    // 8-dim column tiles of a warp's dK, dV
  static_assert(kBN == kStrips * 16 && (D / kDSplit) % 16 == 0, "key strips and dim parts");
  static_assert(!kWgmma || kDSplit == 1, "the wgmma products own whole rows of dK and dV");
  static constexpr uint32_t kTileK = kBN * tile_dim(D) * 2, kTileQ = kBM * tile_dim(D) * 2;
  static constexpr uint32_t kRowBytes = kWgmma ? 128 : tile_dim(D) * 2;
  static constexpr uint32_t kBlkK = kBN * 128, kBlkQ = kBM * 128;
  static constexpr uint32_t kDsRowBytes = kBM * 2;
  // dQ partition: kBM / 16 strips of 16 query rows x kDqSplit slices of the head dim.
  static constexpr int kDqStrips = kBM / 16, kDqSplit = kWarps / kDqStrips, kDqDims = D / kDqSplit;
  static_assert(kBM == 64, "dS^T rows must be 128 bytes (8 swizzled 16-byte chunks)");
  static_assert(kWarps % kDqStrips == 0 && kDqDims % 16 == 0, "dQ partition");
  // A warp's 16 keys and a query tile each lie inside one 64 x 64 block-mask tile, so inside a
  // non-empty (warp, query tile) pair the mask is only causal + bounds.
  static_assert(kBlockMaskTileQ % kBM == 0 && kBlockMaskTileK % 16 == 0, "block-mask tiles");

  // Shared addresses: K, V; Q, dO and dS^T of 2 stages each; LSE [2][kBM], then D_i [2][kBM];
  // then, for products that add dQ by bulk reductions (kBulkDq), the query tile's dQ
  // contribution as fp32 rows [kBM][D] (kDqTileBytes more than Config::kBwdSmem), two of them
  // in the overlap form (kOverlapDq), which alternates them with the stage.
  static constexpr uint32_t kDqTileBytes = kBM * D * 4;
  uint32_t base, sK, sV, sQ, sdO, sdS, sL, sDq;
  const float* pL;
  const float* pD;
  FG_ATTN_DEV explicit DkdvShape(const unsigned char* smem)
      : base(smem_u32(smem)),
        sK(align1024(base)),
        sV(sK + kTileK),
        sQ(sV + kTileK),
        sdO(sQ + 2 * kTileQ),
        sdS(sdO + 2 * kTileQ),
        sL(sdS + 2 * kBN * kDsRowBytes),
        sDq(sL + 2 * 2 * kBM * 4),
        pL(reinterpret_cast<const float*>(smem + (sL - base))),
        pD(pL + 2 * kBM) {}
};

// A position of the walk over (query head hk G + gi, query tile qt); gi = G is the end.
struct QueryTilePos {
  int64_t gi, qt;
};

// The walk of one key tile [k0, k1) of kv head hk over its query tiles. Causal: query row i
// sees key k0 only if i >= causal_first_row(k0), so earlier tiles are skipped. The position is
// stepped, not divided out of a flat index: 64-bit divisions cost as much as a tile's
// elementwise work.
template <int kBM> struct QueryTileWalk {
  int64_t k0, k1, hk, G, nqt, qt_first;
  FG_ATTN_DEV QueryTileWalk(const AttentionParams& p, int64_t k0_, int64_t k1_, int64_t hk_)
      : k0(k0_), k1(k1_), hk(hk_), G(p.Hq / p.Hkv), nqt((p.Nq + kBM - 1) / kBM), qt_first(0) {
    if (p.causal) {
      const int64_t i0 = causal_first_row(p, k0_);
      qt_first = i0 > 0 ? i0 / kBM : 0;
    }
  }

  // The first position at or after x whose tile pair is not empty.
  FG_ATTN_DEV QueryTilePos next_visible(const AttentionParams& p, QueryTilePos x) const {
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
  }
};

// cp.async of the query tile at q0 of head h into stage st: Q, dO, and the LSE and D_i of its
// rows (zero past Nq).
template <int D, typename S>
FG_ATTN_DEV void load_query_tile(const S& sm, const AttentionParams& p, const float* Di,
                                 int64_t b, int64_t h, int64_t q0, int st) {
  constexpr int kBM = S::kBM, kThreads = S::kThreads;
  load_tile_async<D, kBM, kThreads, S::kWgmma>(
      sm.sQ + st * S::kTileQ, p.q_head<const uint16_t>(b, h), p.q_seq_stride, q0, p.Nq);
  load_tile_async<D, kBM, kThreads, S::kWgmma>(
      sm.sdO + st * S::kTileQ, p.do_head<const uint16_t>(b, h), p.do_seq_stride, q0, p.Nq);
  const int tid = int(threadIdx.x);
  if (tid < 2 * kBM) {
    const int r = tid % kBM;
    const bool is_di = tid >= kBM;
    const int64_t row = (b * p.Hq + h) * p.Nq + q0 + r;
    const bool valid = q0 + r < p.Nq;
    const float* lse = static_cast<const float*>(p.lse);
    const float* src = is_di ? Di + (valid ? row : 0) : lse + (valid ? row : 0);
    cp_async_4(sm.sL + uint32_t(((is_di ? 2 : 0) + st) * kBM * 4 + r * 4), src, valid ? 4 : 0);
  }
}

// dS^T = scale P^T (dP^T Z - D_i) into dp, and P^T <- P^T Z into s, for the warp's keys
// kw0 .. and the query tile at q0 (di: its D_i in shared memory).
template <int kNT>
FG_ATTN_DEV void ds_transposed(float (&s)[kNT][4], float (&dp)[kNT][4], const float* di,
                               int64_t kw0, int64_t q0, int g, int t, uint32_t ph,
                               const AttentionParams& p, float scale, const SoftmaxDropout& sd) {
  static_assert(kNT % 4 == 0, "dropout works on chunks of four 8-query column tiles");
#pragma unroll
  for (int c = 0; c < kNT / 4; ++c) {
    uint32_t w[4] = {0u, 0u, 0u, 0u};
    if (sd.dropout) dropout_words_transposed(w, kw0, q0, c, g, t, ph, uint32_t(p.offset), sd);
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      const int nt = 4 * c + m;
      const float2 dd = *reinterpret_cast<const float2*>(di + nt * 8 + 2 * t);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float z = sd.dropout ? dropout_factor_transposed(w, m, e, sd) : 1.f;
        const float pv = s[nt][e];
        dp[nt][e] = scale * pv * (dp[nt][e] * z - ((e & 1) ? dd.y : dd.x));
        s[nt][e] = pv * z;
      }
    }
  }
}

// Keeps A fragment kk of the warp's dS^T (16-bit, as the mma consumes it) in the stage's dS^T
// tile for the dQ step: rows are keys, 16-byte chunk nt of a row holds queries 8 nt .. 8 nt + 7.
template <typename S>
FG_ATTN_DEV void store_ds(uint32_t sdSs, int strip, int g, int t, int kk, const uint32_t (&da)[4]) {
#pragma unroll
  for (int half = 0; half < 2; ++half)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int nt = 2 * kk + half, row = strip * 16 + g + 8 * hr;
      st_shared_u32(
          sdSs + uint32_t(row) * S::kDsRowBytes + uint32_t(((nt ^ (row & 7)) << 4) + 4 * t),
          da[2 * half + hr]);
    }
}

// A warp that sees nothing of the query tile: its keys (strip) contribute zero to dQ.
template <typename S> FG_ATTN_DEV void zero_ds(uint32_t sdSs, int strip, int lane) {
#pragma unroll
  for (int c = 0; c < 16 * int(S::kDsRowBytes) / 16 / 32; ++c)
    st_shared_zero16(sdSs + uint32_t(strip * 16) * S::kDsRowBytes + uint32_t((c * 32 + lane) * 16));
}

// dQ[i, split kDqDims + ..] += dq for the rows i = q0 + 16 strip + g (+8) of this thread.
template <int D, int kN>
FG_ATTN_DEV void add_dq(float* dq_accum, const float (&dq)[kN][4], const AttentionParams& p,
                        int64_t b, int64_t h, int64_t q0, int strip, int split, int g, int t) {
  float* dqh = dq_accum + (b * p.Hq + h) * p.Nq * D;
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = q0 + strip * 16 + g + 8 * hr;
    if (i >= p.Nq) continue;
#pragma unroll
    for (int n = 0; n < kN; ++n)
      atomic_add_f32x2(dqh + i * D + split * kN * 8 + n * 8 + 2 * t, dq[n][2 * hr],
                       dq[n][2 * hr + 1]);
  }
}

// The same rows of dq into the block's fp32 dQ tile in shared memory ([kBM][D], row-major, as
// the accumulator's rows lie in global memory).
template <int D, int kN>
FG_ATTN_DEV void stage_dq(uint32_t sDq, const float (&dq)[kN][4], int strip, int split, int g,
                          int t) {
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const uint32_t row = uint32_t(strip * 16 + g + 8 * hr);
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      const uint32_t col = uint32_t(split * kN * 8 + n * 8 + 2 * t);
      asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(sDq + (row * D + col) * 4),
                   "f"(dq[n][2 * hr]), "f"(dq[n][2 * hr + 1])
                   : "memory");
    }
  }
}

// Thread 0 adds the dQ tile staged at sDq, of the query tile at q0 of head h (its rows below
// Nq), into dq_accum; every thread's stage_dq and fence_proxy_async, then a barrier, come first.
template <int D, typename S>
FG_ATTN_DEV void bulk_add_dq_tile(uint32_t sDq, float* dq_accum, const AttentionParams& p,
                                  int64_t b, int64_t h, int64_t q0) {
  if (threadIdx.x == 0) {
    const int64_t rows = p.Nq - q0 < S::kBM ? p.Nq - q0 : S::kBM;
    bulk_reduce_add_f32(dq_accum + ((b * p.Hq + h) * p.Nq + q0) * D, sDq,
                        uint32_t(rows) * uint32_t(D) * 4u);
    bulk_commit();
  }
}

// dQ += dS K for the query tile at q0 of head h, from the dS^T of stage st: warp w forms a
// 16-row strip and a kDqDims slice of the head dim (Products::dq) and adds it: with an atomic
// per pair of elements (add_dq), or, where Products::kBulkDq, by staging the tile's rows in
// shared memory and adding them with one bulk reduction (common/tma.cuh) that thread 0 issues
// after a barrier. The stage is free again once that reduction has read it: thread 0 waits for
// that (bulk_wait_read) before the barrier that opens the next query tile.
template <int D, typename Products, typename S>
FG_ATTN_DEV void dq_step(const Products& products, const S& sm, float* dq_accum,
                         const AttentionParams& p, int64_t b, int64_t h, int64_t q0, int st,
                         int warp, int g, int t) {
  const int strip = warp % S::kDqStrips, split = warp / S::kDqStrips;
  float dq[S::kDqDims / 8][4];
  zero(dq);
  products.dq(dq, sm, sm.sdS + uint32_t(st) * S::kBN * S::kDsRowBytes, strip, split);
  if constexpr (Products::kBulkDq) {
    stage_dq<D>(sm.sDq, dq, strip, split, g, t);
    fence_proxy_async();  // the stores, for the bulk reduction's reads
    __syncthreads();
    bulk_add_dq_tile<D, S>(sm.sDq, dq_accum, p, b, h, q0);
  } else {
    add_dq<D>(dq_accum, dq, p, b, h, q0, strip, split, g, t);
  }
}

// The mma.sync products of a warp (16 keys). kKeepKV: its K and V A-fragments stay in
// registers for the whole loop.
template <typename T, int D, bool kKeepKV> struct MmaProducts {
  using S = DkdvShape<D, false>;
  static constexpr bool kBulkDq = false, kOverlapDq = false;
  static constexpr int kNT = S::kNT, kDT = S::kDT;
  static constexpr uint32_t kRowBytes = S::kRowBytes;
  uint32_t kf[kKeepKV ? D / 16 : 1][4], vf[kKeepKV ? D / 16 : 1][4];
  bool kv_in_regs = false;
  // Per-lane ldmatrix offsets (common/mma.cuh): A from this warp's K / V rows, B from Q / dO
  // rows (n = query), B.trans from Q / dO / K rows (k = row), A.trans from dS^T (m = query).
  // dpair0: the first 16-dim pair of this warp's part of dK and dV.
  uint32_t aLane, bLane, tLane, dsLane;
  int dpair0;
  FG_ATTN_DEV MmaProducts(int strip, int lane, int part = 0)
      : aLane(lane_offset_a<kRowBytes>(lane, strip * 16)),
        bLane(lane_offset_b<kRowBytes>(lane)),
        tLane(lane_offset_bt<kRowBytes>(lane)),
        dsLane(lane_offset_b<S::kDsRowBytes>(lane)),
        dpair0(part * (kDT / 2)) {}

  FG_ATTN_DEV bool active(const AttentionParams&, int64_t, int64_t, int64_t, int64_t, int,
                          TileVisibility wvis) const {
    return wvis != TileVisibility::empty;
  }

  // Called at the top of every query tile, K and V in shared memory.
  FG_ATTN_DEV void begin_tile(const S& sm) {
    if constexpr (kKeepKV) {
      if (!kv_in_regs) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ++ks) {
          ldmatrix_x4(kf[ks], (sm.sK + aLane) ^ uint32_t(ks << 5));
          ldmatrix_x4(vf[ks], (sm.sV + aLane) ^ uint32_t(ks << 5));
        }
        kv_in_regs = true;
      }
    }
  }

  // S^T = K Q^T and dP^T = V dO^T, 16 keys x kBM queries each (s, dp zeroed by the caller).
  FG_ATTN_DEV void scores(float (&s)[kNT][4], float (&dp)[kNT][4], const S& sm, uint32_t sQs,
                          uint32_t sdOs, int) const {
    mma_score_pair<T, kNT, D, kRowBytes>(s, dp, [&](int ks, uint32_t (&ak)[4], uint32_t (&av)[4]) {
      if constexpr (kKeepKV) {
#pragma unroll
        for (int e = 0; e < 4; ++e) ak[e] = kf[ks][e], av[e] = vf[ks][e];
      } else {
        ldmatrix_x4(ak, (sm.sK + aLane) ^ uint32_t(ks << 5));
        ldmatrix_x4(av, (sm.sV + aLane) ^ uint32_t(ks << 5));
      }
    }, sQs + bLane, sdOs + bLane);
  }

  // dV += (P^T Z) dO and dK += dS^T Q (A re-packed from the accumulators, B through
  // ldmatrix.trans); store(kk, da) keeps dS^T fragment kk for the dQ step.
  template <typename StoreDs>
  FG_ATTN_DEV void dv_dk(float (&dv)[kDT][4], float (&dk)[kDT][4], const float (&s)[kNT][4],
                         const float (&dp)[kNT][4], uint32_t sQs, uint32_t sdOs,
                         StoreDs store) const {
#pragma unroll
    for (int kk = 0; kk < S::kBM / 16; ++kk) {
      uint32_t pa[4], da[4];
      pack_a<T>(s, kk, pa);
      pack_a<T>(dp, kk, da);
      store(kk, da);
#pragma unroll
      for (int dpi = 0; dpi < kDT / 2; ++dpi) {
        uint32_t bo[4], bq[4];
        const uint32_t x = uint32_t((dpair0 + dpi) << 5);
        ldmatrix_x4_trans(bo, ((sdOs + tLane) ^ x) + kk * 16 * kRowBytes);
        ldmatrix_x4_trans(bq, ((sQs + tLane) ^ x) + kk * 16 * kRowBytes);
        mma_16816<T>(dv[2 * dpi], pa, bo[0], bo[1]);
        mma_16816<T>(dv[2 * dpi + 1], pa, bo[2], bo[3]);
        mma_16816<T>(dk[2 * dpi], da, bq[0], bq[1]);
        mma_16816<T>(dk[2 * dpi + 1], da, bq[2], bq[3]);
      }
    }
  }

  // dq = rows 16 strip .. of dS K (A = dS through ldmatrix.trans of the stored dS^T, B = K
  // through ldmatrix.trans), dims split kDqDims .., over the block's kBN keys.
  FG_ATTN_DEV void dq(float (&dq)[S::kDqDims / 8][4], const S& sm, uint32_t sdSs, int strip,
                      int split) const {
#pragma unroll
    for (int kk = 0; kk < S::kBN / 16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4_trans(a, ((sdSs + dsLane) ^ uint32_t(strip << 5)) + kk * 16 * S::kDsRowBytes);
#pragma unroll
      for (int dpi = 0; dpi < S::kDqDims / 16; ++dpi) {
        const int dglob = split * (S::kDqDims / 16) + dpi;
        uint32_t bk[4];
        ldmatrix_x4_trans(bk, ((sm.sK + tLane) ^ uint32_t(dglob << 5)) + kk * 16 * kRowBytes);
        mma_16816<T>(dq[2 * dpi], a, bk[0], bk[1]);
        mma_16816<T>(dq[2 * dpi + 1], a, bk[2], bk[3]);
      }
    }
  }
};

// The dK/dV block (see the file comment) with the products of Products (MmaProducts or
// sm90::WgmmaProducts); kAtomicDq adds the dQ contributions into dq_accum.
template <typename T, int D, typename Products, bool kAtomicDq>
FG_ATTN_DEV void dkdv_block(const AttentionParams& p, const float* __restrict__ Di,
                            float* __restrict__ dq_accum, const unsigned char* smem) {
  using S = typename Products::S;
  constexpr int kBN = S::kBN, kBM = S::kBM, kNT = S::kNT, kDT = S::kDT;
  const S sm(smem);
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  // The warp's 16 keys (strip) and its part of the head dim for dK and dV; the warps of one
  // strip form the same dS^T, which the part-0 warp alone stores for the dQ step.
  const int strip = S::kDSplit == 1 ? warp : warp % S::kStrips;
  const int part = S::kDSplit == 1 ? 0 : warp / S::kStrips;
  const bool stores_ds = part == 0;
  const int64_t k0 = int64_t(blockIdx.x) * kBN, hk = blockIdx.y, b = blockIdx.z;
  const int64_t k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
  const QueryTileWalk<kBM> walk(p, k0, k1, hk);
  const float scale = float(p.softmax_scale);
  const SoftmaxDropout sd(p);

  load_tile_async<D, kBN, S::kThreads, S::kWgmma>(sm.sK, p.k_head<const uint16_t>(b, hk),
                                                  p.k_seq_stride, k0, p.Nk);
  load_tile_async<D, kBN, S::kThreads, S::kWgmma>(sm.sV, p.v_head<const uint16_t>(b, hk),
                                                  p.v_seq_stride, k0, p.Nk);
  QueryTilePos it = walk.next_visible(p, QueryTilePos{0, 0});
  if (it.gi < walk.G) load_query_tile<D>(sm, p, Di, b, hk * walk.G + it.gi, it.qt * kBM, 0);
  cp_async_commit();

  Products products(strip, lane, part);
  auto dq_step = [&](int st, int64_t h, int64_t q0) {
    sm80::dq_step<D>(products, sm, dq_accum, p, b, h, q0, st, warp, g, t);
  };

  float dk[kDT][4], dv[kDT][4];
  zero(dk);
  zero(dv);
  const int64_t kw0 = k0 + strip * 16, kw1 = kw0 + 16 < p.Nk ? kw0 + 16 : p.Nk;
  int stage = 0;
  int64_t prev_h = -1, prev_q0 = 0;  // the query tile whose dQ step is still due
  constexpr bool kOverlap = kAtomicDq && Products::kOverlapDq;
  if constexpr (kOverlap)
    zero_ds<S>(sm.sdS + uint32_t(kBN) * S::kDsRowBytes, strip, lane);  // stage 1 (see the loop)

  while (it.gi < walk.G) {
    if constexpr (Products::kBulkDq) {
      // The dQ tile staged in the buffer this iteration writes has left shared memory: the
      // previous iteration's (bulk form), the one before it (overlap form, two buffers).
      if (tid == 0) bulk_wait_read<Products::kOverlapDq ? 1 : 0>();
    }
    cp_async_wait_all();
    if constexpr (S::kWgmma) fence_proxy_async();  // the copies and dS^T stores, for wgmma
    __syncthreads();  // tile `it` (and K, V) in; every warp done with the previous iteration
    const QueryTilePos it_next = walk.next_visible(p, QueryTilePos{it.gi, it.qt + 1});
    if (it_next.gi < walk.G)
      load_query_tile<D>(sm, p, Di, b, hk * walk.G + it_next.gi, it_next.qt * kBM, stage ^ 1);
    cp_async_commit();
    if constexpr (kAtomicDq && !kOverlap) {
      if (prev_h >= 0) dq_step(stage ^ 1, prev_h, prev_q0);
    }
    products.begin_tile(sm);

    const int64_t h = hk * walk.G + it.gi, q0 = it.qt * kBM;
    const int64_t q1 = q0 + kBM < p.Nq ? q0 + kBM : p.Nq;
    const uint32_t sQs = sm.sQ + uint32_t(stage) * S::kTileQ,
                   sdOs = sm.sdO + uint32_t(stage) * S::kTileQ;
    const uint32_t sdSs = sm.sdS + uint32_t(stage) * kBN * S::kDsRowBytes;
    const TileVisibility wvis =
        kw0 < p.Nk ? tile_visibility(p, h, q0, q1, kw0, kw1) : TileVisibility::empty;
    // P^T (masked where this (warp, query tile) pair is partial or runs past Nk or Nq), then
    // dS^T into dp and P^T Z into s.
    auto probabilities_and_ds = [&](float (&s)[kNT][4], float (&dp)[kNT][4]) {
      if (wvis != TileVisibility::full || kw0 + 16 > p.Nk || q0 + kBM > p.Nq)
        mask_scores_transposed(s, p, kw0, q0, g, t);
      probabilities_transposed(s, sm.pL + stage * kBM, t, sd.sl2);
      const uint32_t ph = uint32_t(p.batch_index_base + b) * uint32_t(p.Hq) + uint32_t(h);
      ds_transposed(s, dp, sm.pD + stage * kBM, kw0, q0, g, t, ph, p, scale, sd);
    };
    if constexpr (kOverlap) {
      // The previous tile's dQ product runs on the tensor cores while this tile's
      // probabilities and dS are formed: S^T, dP^T; issue dQ; the elementwise steps; wait for
      // dQ and stage it; dV, dK; then the barrier and the bulk reduction of the staged dQ.
      // On the first tile the product runs on the zeroed dS^T of stage 1 and nothing is added:
      // no wgmma sits in a branch (ptxas serialises every wgmma of a kernel that has one in a
      // path it cannot prove uniform).
      const bool act = products.active(p, h, q0, q1, k0, strip, wvis);
      const int dq_strip = warp % S::kDqStrips, dq_split = warp / S::kDqStrips;
      // Every product and elementwise step runs in every warpgroup, also in one that sees
      // nothing of the tile (its P and dS are zeroed before dV, dK and the stored dS^T), so
      // that no branch encloses a wgmma.
      float s[kNT][4], dp[kNT][4], dq[S::kDqDims / 8][4];
      zero(s);
      zero(dp);
      products.scores(s, dp, sm, sQs, sdOs, strip);
      zero(dq);
      products.dq_issue(dq, sm, sm.sdS + uint32_t(stage ^ 1) * kBN * S::kDsRowBytes, dq_split);
      probabilities_and_ds(s, dp);
      products.dq_finish(dq);
      const uint32_t sDqs = sm.sDq + uint32_t(stage) * S::kDqTileBytes;  // alternating buffers
      stage_dq<D>(sDqs, dq, dq_strip, dq_split, g, t);
      fence_proxy_async();  // the stores, for the bulk reduction's reads
      if (!act) {  // P and dS of keys that see nothing of the tile are zero
        zero(s);
        zero(dp);
      }
      products.dv_dk(dv, dk, s, dp, sQs, sdOs, [&](int kk, const uint32_t (&da)[4]) {
        store_ds<S>(sdSs, strip, g, t, kk, da);
      });
      __syncthreads();  // every thread's part of the staged dQ is in
      if (prev_h >= 0) bulk_add_dq_tile<D, S>(sDqs, dq_accum, p, b, prev_h, prev_q0);
    } else if (products.active(p, h, q0, q1, k0, strip, wvis)) {
      float s[kNT][4], dp[kNT][4];
      zero(s);
      zero(dp);
      products.scores(s, dp, sm, sQs, sdOs, strip);
      probabilities_and_ds(s, dp);
      products.dv_dk(dv, dk, s, dp, sQs, sdOs, [&](int kk, const uint32_t (&da)[4]) {
        if constexpr (kAtomicDq) {
          if (stores_ds) store_ds<S>(sdSs, strip, g, t, kk, da);
        }
      });
    } else if constexpr (kAtomicDq) {
      if (stores_ds) zero_ds<S>(sdSs, strip, lane);
    }
    prev_h = h, prev_q0 = q0;
    stage ^= 1;
    it = it_next;
  }
  cp_async_wait_all();  // nothing may be in flight when the block exits
  if constexpr (kAtomicDq) {
    if (prev_h >= 0) {
      if constexpr (S::kWgmma) fence_proxy_async();  // the dS^T stores, for wgmma's reads
      if constexpr (Products::kBulkDq) {
        if (tid == 0) bulk_wait_read<0>();  // the loop's last dQ tile has left shared memory
      }
      __syncthreads();  // every warp's dS^T of the last tile is in
      dq_step(stage ^ 1, prev_h, prev_q0);
      if constexpr (Products::kBulkDq) {
        if (tid == 0) bulk_wait<0>();  // done before the block's shared memory goes
      }
    }
  }

  const int64_t d0 = int64_t(part) * (D / S::kDSplit);  // this warp's first dim of dK, dV
  store_fragment_rows<T>(kw0, p.Nk, g, t, p.dk_head<T>(b, hk) + d0, p.dk_seq_stride, dk,
                         p.dv_head<T>(b, hk) + d0, p.dv_seq_stride, dv);
}

}  // namespace sm80
}  // namespace attn
}  // namespace fg
