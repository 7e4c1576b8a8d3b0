// Warp-specialised backward for bf16 / fp16 on Hopper (sm_90a), D in {64, 128}, and its
// launcher sm90ws::run_backward<T, D>: the dK/dV block of sm80/backward_dkdv.cuh with the wgmma
// products of sm90/backward.cuh, fed by TMA from a producer warp as in FlashAttention-3's
// backward (Shah et al., 2024), and dQ added by bulk reductions.
//
// A block owns kBN = 128 keys of one kv head and is three warpgroups:
//   producer  (warpgroup 0, warp 0): the block's K and V tiles once, then, for each query tile
//             the block sees (QueryTileWalk: the heads of the GQA group, causal and block-mask
//             tiles skipped), Q and dO by TMA and the rows' LSE and D_i by plain loads into a
//             ring of kStages stages. A stage's "full" barrier completes when the TMA bytes
//             have landed and the warp's 32 lanes have stored LSE and D_i; the 256 consumer
//             threads' arrivals on its "empty" barrier give it back. The warpgroup keeps 24
//             registers (setmaxnreg) so that the consumers can have 240.
//   consumers (warpgroups 1 and 2, 64 keys each; warp c of them owns keys 16 c ..): per query
//             tile, S^T and dP^T (m64n64 wgmma), P^T, dropout and dS^T in registers, dV and dK
//             (wgmma, A from registers), dS^T kept in shared memory, the stage given back; then
//             the block's dQ contribution dS K, in one of three forms (kForm):
//               split (the default): a named barrier of the 256 consumer threads (every dS^T
//               in), warpgroup w forms the dims w D/2 .. of the 64 x D tile over all 128 keys
//               (wgmma), stages them in shared memory as fp32 rows, and after a second named
//               barrier one thread adds the tile to the accumulator with one bulk reduction;
//               own (FLASHGRAD_TMA_BWD_DQ=own): each warpgroup forms the whole 64 x D tile
//               over its own 64 keys and adds it with its own bulk reduction, meeting only its
//               own four warps (named barrier 1 + w of 128 threads), so that the two
//               warpgroups never wait for each other and drift apart (one's elementwise steps
//               under the other's products), for twice the reductions in L2 and a second
//               staging buffer (D 128: 2 stages instead of 3);
//               pipelined (FLASHGRAD_TMA_BWD_DQ=pipe, D 64 only: registers): the own form with
//               FlashAttention-3's overlap inside a warpgroup: tile n's S^T and dP^T are
//               issued ahead of tile n - 1's dV, dK and dQ products, and the warpgroup forms
//               tile n's P and dS while those run on the tensor cores (a stage is held for two
//               tiles).
// Compared with the wgmma block (sm90/backward.cuh) the consumers issue no loads, wait on
// mbarriers instead of a block-wide barrier, and the ring runs kStages tiles ahead.
//
// The deterministic backward (no atomics, no reductions in L2) and a dQ accumulator off 16
// bytes run the wgmma kernels instead (run_backward says so).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/env.h"
#include "core/error.h"
#include "kernels/attention/common/backward.cuh"
#include "kernels/attention/common/tensor_map.h"
#include "kernels/attention/common/tma.cuh"
#include "kernels/attention/sm90/backward.cuh"

namespace fg {
namespace attn {
namespace sm90ws {

// Shared memory, from a 1024-byte aligned base: K and V (kBN rows each, as 64-column blocks of
// 128-byte swizzled rows: the layout of sm80::DkdvShape<D, true>, whose sK and sV the products
// read), kStages stages of Q and then of dO (kBM rows each), dS^T (kBN x kBM, 16-bit), P^T in
// the same layout (the pipelined form only), the fp32 dQ tile (kBM x D; one per warpgroup in
// the own and pipelined forms), kStages stages of LSE and of D_i (kBM floats each), then the
// barriers.
// kForm: kSplitDq, kOwnDq or kPipelined (see the file comment).
enum BackwardForm { kSplitDq = 0, kOwnDq = 1, kPipelined = 2 };
template <int D_, int kForm_> struct BackwardConfig {
  static constexpr int D = D_;
  static constexpr int kForm = kForm_;
  static_assert(kForm != kPipelined || D == 64,
                "the pipelined form keeps a tile's P and dS fragments beside the next tile's "
                "scores: registers for D = 64 only");
  static constexpr bool kOwnDq = kForm != kSplitDq;  // each warpgroup adds its own dQ tile
  static_assert(D == 64 || D == 128, "the warp-specialised backward is built for D = 64 and 128");
  using Shape = sm80::DkdvShape<D, true>;
  static constexpr int kBM = Shape::kBM, kBN = Shape::kBN;
  static_assert(kBM == 64 && kBN == 128 && Shape::kWarps == 8,
                "two consumer warpgroups of 64 keys, query tiles of 64 rows");
  static constexpr int kConsumerWarps = Shape::kWarps, kThreads = 128 + 32 * kConsumerWarps;
  static constexpr int kStages = D == 64 ? 4 : kOwnDq ? 2 : 3;
  static constexpr uint32_t kTileK = Shape::kTileK, kTileQ = Shape::kTileQ;
  static constexpr uint32_t kOffV = kTileK, kOffQ = 2 * kTileK;
  static constexpr uint32_t kOffdO = kOffQ + kStages * kTileQ;
  static constexpr uint32_t kOffdS = kOffdO + kStages * kTileQ;
  // (The pipelined form keeps P^T beside dS^T, in the same layout: kOffP.)
  static constexpr uint32_t kOffP = kOffdS + kBN * Shape::kDsRowBytes;
  static constexpr uint32_t kOffDq = kOffP + (kForm == kPipelined ? kBN * Shape::kDsRowBytes : 0);
  static constexpr uint32_t kOffL = kOffDq + (kOwnDq ? 2 : 1) * Shape::kDqTileBytes;
  static constexpr uint32_t kOffDi = kOffL + kStages * kBM * 4;
  static constexpr uint32_t kOffBars = kOffDi + kStages * kBM * 4;
  static constexpr int kBarriers = 1 + 2 * kStages;  // K and V; full and empty per stage
  static constexpr size_t kSmem = 1024 + size_t(kOffBars) + 8 * kBarriers;
  static_assert(kSmem <= 227 * 1024, "one block an SM on Hopper");
  static_assert(kOffdS % 1024 == 0 && kOffP % 1024 == 0 && kOffQ % 1024 == 0 &&
                    kTileQ % 1024 == 0,
                "swizzled tiles start on 1024-byte boundaries");
  // The block starts with 168 registers a thread (__launch_bounds__(384, 1): 64K / 384,
  // rounded down to a multiple of 8); the producer gives 128 x 144 back, the consumers take
  // 256 x 72. A build that caps registers lower (-maxrregcount) would leave setmaxnreg.inc
  // waiting forever: keep the two counts in step with the launch bounds.
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;  // 128 x 24 + 256 x 240 <= 64K
};

struct BackwardMaps {
  CUtensorMap q, k, v, do_;
};

template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    dkdv_kernel(const AttentionParams p, const __grid_constant__ BackwardMaps maps,
                const float* __restrict__ Di, float* __restrict__ dq_accum) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = typename Cfg::Shape;
  using Products = sm90::WgmmaProducts<T, Cfg::D, sm90::kDqBulk>;
  constexpr int D = Cfg::D, kBM = Cfg::kBM, kBN = Cfg::kBN, kS = Cfg::kStages;
  constexpr int kNT = S::kNT, kDT = S::kDT, kCB = D / 64;
  constexpr uint32_t kTileQ = Cfg::kTileQ;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const S sm(tc_smem);  // the products read K and V at sm.sK, sm.sV: this layout's first tiles
  const uint32_t sK = sm.sK, sV = sK + Cfg::kOffV, sQ = sK + Cfg::kOffQ, sdO = sK + Cfg::kOffdO;
  const uint32_t sdS = sK + Cfg::kOffdS, sDq = sK + Cfg::kOffDq, sL = sK + Cfg::kOffL;
  const uint32_t sDi = sK + Cfg::kOffDi, bars = sK + Cfg::kOffBars;
  const float* pL = reinterpret_cast<const float*>(tc_smem + (sL - smem_u32(tc_smem)));
  const float* pDi = pL + kS * kBM;
  const uint32_t kv_full = bars;
  auto full = [&](int s) { return bars + uint32_t(8 * (1 + s)); };
  auto empty = [&](int s) { return bars + uint32_t(8 * (1 + kS + s)); };

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int64_t k0 = int64_t(blockIdx.x) * kBN, hk = blockIdx.y, b = blockIdx.z;
  const int64_t k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
  const sm80::QueryTileWalk<kBM> walk(p, k0, k1, hk);
  if (tid == 0) {
    mbar_init(kv_full, 1);
    for (int s = 0; s < kS; ++s) {
      mbar_init(full(s), 1 + 32);  // the TMA arrival and the producer warp's 32 lanes
      mbar_init(empty(s), 32 * Cfg::kConsumerWarps);  // every consumer thread
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warp < 4) {
    // The producer. Both sides walk the same query tiles; tile n of the walk uses stage
    // n % kS in phase (n / kS) & 1 of its barriers.
    setmaxnreg_dec<Cfg::kProducerRegs>();
    if (warp != 0) return;
    if (lane == 0) {
      mbar_arrive_expect_tx(kv_full, 2 * Cfg::kTileK);
#pragma unroll
      for (int cb = 0; cb < kCB; ++cb) {
        tma_load_4d(sK + uint32_t(cb * kBN * 128), &maps.k, kv_full, 64 * cb, int(k0), int(hk),
                    int(b));
        tma_load_4d(sV + uint32_t(cb * kBN * 128), &maps.v, kv_full, 64 * cb, int(k0), int(hk),
                    int(b));
      }
    }
    int n = 0;
    for (sm80::QueryTilePos it = walk.next_visible(p, sm80::QueryTilePos{0, 0}); it.gi < walk.G;
         it = walk.next_visible(p, sm80::QueryTilePos{it.gi, it.qt + 1}), ++n) {
      const int s = n % kS;
      const int64_t h = hk * walk.G + it.gi, q0 = it.qt * kBM;
      mbar_wait(empty(s), uint32_t((n / kS) & 1) ^ 1u);
      if (lane == 0) {
        mbar_arrive_expect_tx(full(s), 2 * kTileQ);
#pragma unroll
        for (int cb = 0; cb < kCB; ++cb) {
          tma_load_4d(sQ + uint32_t(s) * kTileQ + uint32_t(cb * kBM * 128), &maps.q, full(s),
                      64 * cb, int(q0), int(h), int(b));
          tma_load_4d(sdO + uint32_t(s) * kTileQ + uint32_t(cb * kBM * 128), &maps.do_, full(s),
                      64 * cb, int(q0), int(h), int(b));
        }
      }
      // The rows' LSE and D_i (zero past Nq: those query columns are masked), every load
      // issued before the first store.
      static_assert(kBM == 64, "two rows a lane");
      const int64_t row0 = (b * p.Hq + h) * p.Nq + q0;
      const float* lse = static_cast<const float*>(p.lse);
      const bool v0 = q0 + lane < p.Nq, v1 = q0 + lane + 32 < p.Nq;
      const int64_t r0 = row0 + (v0 ? lane : 0), r1 = row0 + (v1 ? lane + 32 : 0);
      const float l0 = lse[r0], l1 = lse[r1], d0 = Di[r0], d1 = Di[r1];
      st_shared_f32(sL + uint32_t((s * kBM + lane) * 4), v0 ? l0 : 0.f);
      st_shared_f32(sL + uint32_t((s * kBM + lane + 32) * 4), v1 ? l1 : 0.f);
      st_shared_f32(sDi + uint32_t((s * kBM + lane) * 4), v0 ? d0 : 0.f);
      st_shared_f32(sDi + uint32_t((s * kBM + lane + 32) * 4), v1 ? d1 : 0.f);
      mbar_arrive(full(s));
    }
    return;
  }

  // A consumer warp: c = warp - 4 owns keys kw0 = k0 + 16 c .. (warpgroup c / 4: 64 keys).
  setmaxnreg_inc<Cfg::kConsumerRegs>();
  const int c = warp - 4;
  const int g = lane >> 2, t = lane & 3;
  const float scale = float(p.softmax_scale);
  const SoftmaxDropout sd(p);
  const Products products(c, lane);
  const int wg = c / 4, dq_strip = c % S::kDqStrips, dq_split = c / S::kDqStrips;
  // The thread that issues the bulk reductions: of the block (split form), of each warpgroup
  // (own form), whose staged tile is at sDqw.
  const bool adds_dq = (Cfg::kOwnDq ? c % 4 : c) == 0 && lane == 0;
  const uint32_t sDqw = sDq + (Cfg::kOwnDq ? uint32_t(wg) * S::kDqTileBytes : 0u);
  const int64_t kw0 = k0 + 16 * c, kw1 = kw0 + 16 < p.Nk ? kw0 + 16 : p.Nk;
  float dk[kDT][4], dv[kDT][4];
  zero(dk);
  zero(dv);
  mbar_wait(kv_full, 0);

  // The n-th tile of the walk, at walk position `it`: its stage is n % kS (in phase
  // (n / kS) & 1), its rows q0 .. of head h; the rest is recomputed where needed (registers).
  struct Tile {
    int n;
    int64_t h, q0;
  };
  auto tile_at = [&](sm80::QueryTilePos it, int n) {
    return Tile{n, hk * walk.G + it.gi, it.qt * kBM};
  };
  auto stage_q = [&](const Tile& x) { return sQ + uint32_t(x.n % kS) * kTileQ; };
  auto stage_do = [&](const Tile& x) { return sdO + uint32_t(x.n % kS) * kTileQ; };
  auto wait_full = [&](const Tile& x) { mbar_wait(full(x.n % kS), uint32_t((x.n / kS) & 1)); };
  // What the warp (wvis) and its warpgroup (act) see of the tile: worked out before the
  // scores are issued (afterwards, with S^T and dP^T live, it cost ptxas 120 bytes more spill).
  struct Sight {
    TileVisibility wvis;
    bool act;
  };
  auto sight = [&](const Tile& x) {
    const int64_t q1 = x.q0 + kBM < p.Nq ? x.q0 + kBM : p.Nq;
    const TileVisibility wvis =
        kw0 < p.Nk ? tile_visibility(p, x.h, x.q0, q1, kw0, kw1) : TileVisibility::empty;
    return Sight{wvis, products.active(p, x.h, x.q0, q1, k0, c, wvis)};
  };
  // P^T (masked where this warp's pair with the tile is partial or runs past Nk or Nq); dS^T
  // into dp and P^T Z into sc, once S^T and dP^T are in. Every warpgroup runs every product,
  // also one that sees nothing of the tile (its P and dS are zeroed), so that no wgmma sits in
  // a branch (ptxas serialises the wgmma of a kernel where one does).
  auto elementwise = [&](const Tile& x, Sight v, float (&sc)[kNT][4], float (&dp)[kNT][4]) {
    if (v.wvis != TileVisibility::full || kw0 + 16 > p.Nk || x.q0 + kBM > p.Nq)
      mask_scores_transposed(sc, p, kw0, x.q0, g, t);
    const int st = x.n % kS;
    probabilities_transposed(sc, pL + st * kBM, t, sd.sl2);
    const uint32_t ph = uint32_t(p.batch_index_base + b) * uint32_t(p.Hq) + uint32_t(x.h);
    sm80::ds_transposed(sc, dp, pDi + st * kBM, kw0, x.q0, g, t, ph, p, scale, sd);
    if (!v.act) {
      zero(sc);
      zero(dp);
    }
  };
  // One bulk reduction of the staged dQ tile of the tile x (its rows below Nq).
  auto add_dq_tile = [&](const Tile& x) {
    const int64_t rows = p.Nq - x.q0 < kBM ? p.Nq - x.q0 : kBM;
    bulk_reduce_add_f32(dq_accum + ((b * p.Hq + x.h) * p.Nq + x.q0) * D, sDqw,
                        uint32_t(rows) * uint32_t(D) * 4u);
    bulk_commit();
  };

  if constexpr (Cfg::kForm == kPipelined) {
    // Tile n's S^T and dP^T are issued first, then tile n - 1's dV, dK (A = its P^T and dS^T,
    // stored in shared memory) and its dQ (own keys, from the same dS^T); the warpgroup waits
    // for the scores alone and forms tile n's P and dS while the other products are still on
    // the tensor cores. Then it waits for those, gives tile n - 1's stage back (dV, dK read its
    // Q and dO), stages dQ of tile n - 1 and stores tile n's P^T and dS^T between two barriers
    // of its own four warps, and adds the staged tile. A stage is held for two tiles. (With
    // P and dS kept as register fragments through the window ptxas spilled 328 bytes; a
    // review measured where: this form has none of them live there.)
    const uint32_t sP = sK + Cfg::kOffP;
    float dq[D / 8][4];
    // Tile n's P^T and dS^T into shared memory, as 16-bit A fragments (the dS^T layout).
    auto store_p_ds = [&](const float (&sc)[kNT][4], const float (&dp)[kNT][4]) {
#pragma unroll
      for (int kk = 0; kk < kBM / 16; ++kk) {
        uint32_t a[4];
        pack_a<T>(sc, kk, a);
        sm80::store_ds<S>(sP, c, g, t, kk, a);
        pack_a<T>(dp, kk, a);
        sm80::store_ds<S>(sdS, c, g, t, kk, a);
      }
    };
    // The end of tile `prev`, whose products are issued: wait for them, give its stage back
    // and stage its dQ (finish_products); the caller then stores the next tile's P^T and dS^T,
    // if any; then both are published to the async proxy and the staged tile is added
    // (finish_dq).
    auto finish_products = [&](const Tile& prev) {
      wgmma_wait<0>();
      fence_accumulator(dv);
      fence_accumulator(dk);
      fence_accumulator(dq);
      mbar_arrive(empty(prev.n % kS));  // its Q and dO are read
      if (adds_dq) bulk_wait_read<0>();
      // The warpgroup's products done (P^T, dS^T free), the staging buffer free.
      named_barrier_sync(1 + wg, 128);
      sm80::stage_dq<D>(sDqw, dq, c % 4, 0, g, t);
    };
    auto finish_dq = [&](const Tile& prev) {
      fence_proxy_async();  // the staged rows, P^T and dS^T stores, for the async proxy
      named_barrier_sync(1 + wg, 128);
      if (adds_dq) add_dq_tile(prev);
    };
    // Tile `prev`'s dV, dK and dQ products: two commit groups (wgmma_wait<2> below counts on
    // the scores being the only group older than them).
    auto issue_rest = [&](const Tile& prev) {
      zero(dq);
      products.dv_dk_issue_ss(dv, dk, sP, sdS, wg, stage_q(prev), stage_do(prev));
      products.dq_own_keys_issue(dq, sm, sdS, wg);
    };

    sm80::QueryTilePos it = walk.next_visible(p, sm80::QueryTilePos{0, 0});
    if (it.gi < walk.G) {
      Tile prev = tile_at(it, 0);
      {
        const Sight v = sight(prev);
        float sc[kNT][4], dp[kNT][4];
        zero(sc);
        zero(dp);
        wait_full(prev);
        products.scores(sc, dp, sm, stage_q(prev), stage_do(prev), c);
        elementwise(prev, v, sc, dp);
        store_p_ds(sc, dp);
        fence_proxy_async();
        named_barrier_sync(1 + wg, 128);  // the warpgroup's P^T and dS^T rows in
      }
      int n = 1;
      for (it = walk.next_visible(p, sm80::QueryTilePos{it.gi, it.qt + 1}); it.gi < walk.G;
           it = walk.next_visible(p, sm80::QueryTilePos{it.gi, it.qt + 1}), ++n) {
        const Tile x = tile_at(it, n);
        const Sight v = sight(x);
        float sc[kNT][4], dp[kNT][4];
        zero(sc);
        zero(dp);
        wait_full(x);
        products.scores_issue(sc, dp, sm, stage_q(x), stage_do(x), c);  // one group
        issue_rest(prev);                                                // two groups
        wgmma_wait<2>();  // the scores are in; dV, dK and dQ of the tile before may still run
        fence_accumulator(sc);
        fence_accumulator(dp);
        elementwise(x, v, sc, dp);
        finish_products(prev);
        store_p_ds(sc, dp);
        finish_dq(prev);
        prev = x;
      }
      issue_rest(prev);
      finish_products(prev);
      finish_dq(prev);
    }
  } else {
    int n = 0;
    for (sm80::QueryTilePos it = walk.next_visible(p, sm80::QueryTilePos{0, 0}); it.gi < walk.G;
         it = walk.next_visible(p, sm80::QueryTilePos{it.gi, it.qt + 1}), ++n) {
      const Tile x = tile_at(it, n);
      const Sight v = sight(x);
      float sc[kNT][4], dp[kNT][4];
      zero(sc);
      zero(dp);
      wait_full(x);
      products.scores(sc, dp, sm, stage_q(x), stage_do(x), c);
      elementwise(x, v, sc, dp);
      products.dv_dk(dv, dk, sc, dp, stage_q(x), stage_do(x), [&](int kk, const uint32_t (&da)[4]) {
        sm80::store_ds<S>(sdS, c, g, t, kk, da);
      });
      // This thread is done with the stage's Q, dO (its wgmma have completed), LSE and D_i.
      // Every thread arrives: with one arrival a warp after __syncwarp, compute-sanitizer's
      // racecheck reported the producer's next LSE/D_i stores against the other lanes' reads
      // (H100, 2026-12-08).
      mbar_arrive(empty(x.n % kS));

      // dQ += dS K: the dS^T rows the product reads in (and the last tile's staged dQ read by
      // its bulk reduction), the product, the fp32 rows staged, then one reduction. The split
      // form meets all 8 consumer warps on named barrier 1, the own form each warpgroup's 4 on
      // barrier 1 + wg.
      fence_proxy_async();  // the dS^T stores, for wgmma's reads
      if (adds_dq) bulk_wait_read<0>();
      constexpr int kDqThreads = Cfg::kOwnDq ? 128 : 32 * Cfg::kConsumerWarps;
      const int dq_bar = Cfg::kOwnDq ? 1 + wg : 1;
      named_barrier_sync(dq_bar, kDqThreads);
      if constexpr (Cfg::kOwnDq) {
        float dq[D / 8][4];
        zero(dq);
        products.dq_own_keys(dq, sm, sdS, wg);
        sm80::stage_dq<D>(sDqw, dq, c % 4, 0, g, t);
      } else {
        float dq[S::kDqDims / 8][4];
        zero(dq);
        products.dq(dq, sm, sdS, dq_strip, dq_split);
        sm80::stage_dq<D>(sDqw, dq, dq_strip, dq_split, g, t);
      }
      fence_proxy_async();  // the staged rows, for the bulk reduction's reads
      named_barrier_sync(dq_bar, kDqThreads);
      if (adds_dq) add_dq_tile(x);
    }
  }
  if (adds_dq) bulk_wait<0>();  // done before the block's shared memory goes

  store_fragment_rows<T>(kw0, p.Nk, g, t, p.dk_head<T>(b, hk), p.dk_seq_stride, dk,
                         p.dv_head<T>(b, hk), p.dv_seq_stride, dv);
#else
  __trap();  // built without sm_90a code; the dispatcher never picks this kernel then
#endif
}

// The launch sequence of common/backward.cuh with this file's dK/dV kernel in the given dQ
// form.
template <typename T, typename Cfg>
void launch_backward(const AttentionParams& p, cudaStream_t stream) {
  constexpr int D = Cfg::D;
  BackwardMaps maps;
  maps.q = head_tensor_map(p.q, p.B, p.Nq, p.Hq, D, p.q_batch_stride, p.q_seq_stride,
                           p.q_head_stride, Cfg::kBM);
  maps.do_ = head_tensor_map(p.do_, p.B, p.Nq, p.Hq, D, p.do_batch_stride, p.do_seq_stride,
                             p.do_head_stride, Cfg::kBM);
  maps.k = head_tensor_map(p.k, p.B, p.Nk, p.Hkv, D, p.k_batch_stride, p.k_seq_stride,
                           p.k_head_stride, Cfg::kBN);
  maps.v = head_tensor_map(p.v, p.B, p.Nk, p.Hkv, D, p.v_batch_stride, p.v_seq_stride,
                           p.v_head_stride, Cfg::kBN);
  auto kernel = dkdv_kernel<T, Cfg>;
  set_smem_limit(kernel, Cfg::kSmem);
  run_backward_sequence<T, D, float>(
      p, stream,
      [&](auto, float* Di, float* dq_accum) {
        const dim3 grid(unsigned((p.Nk + Cfg::kBN - 1) / Cfg::kBN), unsigned(p.Hkv),
                        unsigned(p.B));
        kernel<<<grid, Cfg::kThreads, Cfg::kSmem, stream>>>(p, maps, Di, dq_accum);
        FG_LAUNCH_CHECK();
      },
      [](float*) {
        throw Error("flash attention: the warp-specialised backward has no deterministic dQ pass "
                    "(run_backward hands such calls to the wgmma kernels)");
      });
}

// Deterministic calls and a dQ accumulator off 16 bytes take the wgmma backward; the others
// this file's kernel, in the split dQ form unless FLASHGRAD_TMA_BWD_DQ names another: `own`,
// or `pipe` (the pipelined form, D 64; at D 128 it runs the split form). For A/B measurements
// until a GPU run has timed them.
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  static const int form = env_choice("FLASHGRAD_TMA_BWD_DQ", {"split", "own", "pipe"});
  if (p.deterministic || !BackwardWorkspace<float>(p).dq_accum_aligned16())
    return sm90::run_backward<T, D>(p, stream);
  if (form == kOwnDq) return launch_backward<T, BackwardConfig<D, kOwnDq>>(p, stream);
  if constexpr (D == 64) {
    if (form == kPipelined) return launch_backward<T, BackwardConfig<D, kPipelined>>(p, stream);
  }
  launch_backward<T, BackwardConfig<D, kSplitDq>>(p, stream);
}

}  // namespace sm90ws
}  // namespace attn
}  // namespace fg
