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
// each other's softmax; in the ping-pong form (kPingPong, the default) they issue their products
// in turn.
//
// The launch is persistent: one block per SM walks a list of work items (query tile, head,
// batch; the tiles with the most keys first), and the producer loads the next item's Q and keys
// while the consumers finish the last one's products and write its output.
//
// Same function, tile skipping (causal, Nk), masking, dropout bits and output as the other
// forwards; block masks are left to them (a 128-key tile spans two 64-key mask tiles, and the
// in-tile masking here is causal and length only). TMA zero-fills rows past Nq and Nk.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/cuda_device.h"
#include "core/env.h"
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
// kConsumers warpgroups of 64 query rows (three, of 160 registers at D 64, spill: ptxas
// allocates each warpgroup's code within its setmaxnreg count); kPingPong: they issue their
// wgmma in turn (named barriers), so that one's softmax runs while another's products occupy
// the tensor cores.
template <int D_, bool kPingPong_> struct ForwardConfig {
  static constexpr int D = D_;
  static_assert(D == 64 || D == 128, "the warp-specialised forward is built for D = 64 and 128");
  static constexpr int kConsumers = 2;
  static constexpr bool kPingPong = kPingPong_;
  static constexpr int kBM = 64 * kConsumers, kBN = 128, kThreads = 128 * (kConsumers + 1);
  static constexpr int kStages = D == 64 ? 4 : 3;
  static constexpr uint32_t kTileQ = kBM * D * 2, kStage = kBN * D * 2;
  static constexpr int kBarriers = 2 + 3 * kStages;  // Q full and empty, full K, full V, empty
  static constexpr size_t kSmem = 1024 + kTileQ + 2 * size_t(kStages) * kStage + 8 * kBarriers;
  // The producer gives its registers back; the consumers share the rest (64K a block).
  static constexpr int kProducerRegs = 24, kConsumerRegs = 240;  // 128 x 24 + 256 x 240 <= 64K
};

struct ForwardMaps {
  CUtensorMap q, k, v;
};

template <typename T, typename Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    forward_kernel(const AttentionParams p, const __grid_constant__ ForwardMaps maps,
                   bool p_head_major) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int D = Cfg::D, kBM = Cfg::kBM, kBN = Cfg::kBN, kS = Cfg::kStages;
  constexpr int kNT = kBN / 8, kDT = D / 8, kCB = D / 64;
  constexpr uint32_t kStage = Cfg::kStage;
  extern __shared__ __align__(128) unsigned char tc_smem[];
  const uint32_t sQ = align1024(smem_u32(tc_smem));
  const uint32_t sK = sQ + Cfg::kTileQ, sV = sK + kS * kStage, bars = sV + kS * kStage;
  const uint32_t bar_q = bars, q_empty = bars + 8;
  auto full_k = [&](int s) { return bars + uint32_t(8 * (2 + s)); };
  auto full_v = [&](int s) { return bars + uint32_t(8 * (2 + kS + s)); };
  auto empty = [&](int s) { return bars + uint32_t(8 * (2 + 2 * kS + s)); };

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  if (tid == 0) {
    mbar_init(bar_q, 1);
    mbar_init(q_empty, 4 * Cfg::kConsumers);  // one arrival per consumer warp
    for (int s = 0; s < kS; ++s) {
      mbar_init(full_k(s), 1);
      mbar_init(full_v(s), 1);
      mbar_init(empty(s), 4 * Cfg::kConsumers);
    }
    mbar_init_fence();
  }
  __syncthreads();

  // The work: query tiles of every (head, batch), the tiles with the most keys first; block i
  // takes work items i, i + gridDim.x, ... (one each when the grid covers them all). Items run
  // tile-major (the heaviest tile of every head, then the next) or, with p_head_major, head by
  // head, so that the blocks running at once share their heads' K and V in L2. Without a
  // block mask every key tile below the causal end, [0, nkt), is visible to some row of the
  // query tile, so both sides simply walk them all.
  const int64_t hb = p.Hq * p.B, nqt = (p.Nq + kBM - 1) / kBM, items = nqt * hb;
  auto tile_of = [&](int64_t w) {
    if (p_head_major) {  // the query tiles of one head next to each other (heaviest first)
      const int64_t r = w / nqt;
      return QueryTile<kBM, kBN>(p, w % nqt, r % p.Hq, r / p.Hq);
    }
    const int64_t r = w % hb;
    return QueryTile<kBM, kBN>(p, w / hb, r % p.Hq, r / p.Hq);
  };

  if (warp < 4) {
    // The producer. Both sides walk the same work items and visible key tiles; key tile n
    // (counted over the block's whole run) uses stage n % kS, in phase (n / kS) & 1 of its
    // barriers; work item `it` loads Q in phase it & 1, once the consumers gave the last back.
    setmaxnreg_dec<Cfg::kProducerRegs>();
    if (tid == 0) {
      int n = 0, it = 0;
      for (int64_t w = blockIdx.x; w < items; w += gridDim.x, ++it) {
        const QueryTile<kBM, kBN> tile = tile_of(w);
        const int b = int(tile.b), hk = int(tile.hk);
        mbar_wait(q_empty, uint32_t(it & 1) ^ 1u);
        mbar_arrive_expect_tx(bar_q, Cfg::kTileQ);
#pragma unroll
        for (int cb = 0; cb < kCB; ++cb)
          tma_load_4d(sQ + uint32_t(cb * kBM * 128), &maps.q, bar_q, 64 * cb, int(tile.q0),
                      int(tile.h), b);
        for (int64_t kt = 0; kt < tile.nkt; ++kt, ++n) {
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
    }
    return;
  }

  // A consumer warp: warpgroup wg (query rows q0 + 64 wg ..), its own rows wr0 .. wr0 + 15.
  setmaxnreg_inc<Cfg::kConsumerRegs>();
  const int cw = warp - 4, wg = cw / 4;
  const int g = lane >> 2, t = lane & 3;
  const SoftmaxDropout sd(p);
  const uint32_t qA = sQ + uint32_t(wg * 64 * 128);
  float acc[1][kDT][4], m[1][2], l[1][2], sc[1][kNT][4], alpha[1][2];
  uint32_t pa[kBN / 16][4];  // P of the tile whose P V is next, as wgmma A fragments
  auto release = [&](uint32_t bar) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
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

  // The ping-pong: each issue (S of the first key tile; S of tile j with P V of tile j - 1; the
  // last P V) is one turn. Warpgroup wg waits for its turn on named barrier 1 + wg
  // (common/ptx.cuh), and after issuing hands it to the next on that one's barrier (2 x 128
  // threads take part in each). Per work
  // item, the last warpgroup opens the first turn and skips its final hand-over, so that every
  // barrier is balanced when the item ends.
  constexpr int kC = Cfg::kConsumers;
  auto turn_begin = [&] {
    if constexpr (Cfg::kPingPong) named_barrier_sync(1 + wg, 256);
  };
  auto turn_end = [&](bool last) {
    if constexpr (Cfg::kPingPong)
      if (!(last && wg == kC - 1)) named_barrier_arrive(1 + (wg + 1) % kC, 256);
  };

  int n = 0, it = 0;
  for (int64_t w = blockIdx.x; w < items; w += gridDim.x, ++it) {
    const QueryTile<kBM, kBN> tile = tile_of(w);
    const int64_t wr0 = tile.q0 + 16 * cw, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;
    // The scores of keys [k0, k1) once S is in: masked where the warp's rows need it (a warp
    // whose rows see none of the tile masks it whole, and adds zeros), then exponentiated.
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

    softmax_init(m, l, acc);
    mbar_wait(bar_q, uint32_t(it & 1));
    if (tile.nkt > 0) {
      if constexpr (Cfg::kPingPong)
        if (wg == kC - 1) named_barrier_arrive(1, 256);
      // The first key tile alone; then each step issues S of tile j and P V of tile j - 1
      // together. Every warpgroup runs every key tile the block sees (whole-tile skips per
      // warpgroup would put the wgmma in a branch, where the compiler serialises them).
      int prev = n % kS;
      uint32_t prev_phase = uint32_t((n / kS) & 1);
      {
        const int64_t k1 = kBN < p.Nk ? kBN : p.Nk;
        mbar_wait(full_k(prev), prev_phase);
        turn_begin();
        issue_s(prev);
        turn_end(false);
        wgmma_wait<0>();
        softmax_step(0, k1);
        make_p(0);
        ++n;
      }
      for (int64_t kt = 1; kt < tile.nkt; ++kt, ++n) {
        const int s = n % kS;
        const uint32_t phase = uint32_t((n / kS) & 1);
        const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
        mbar_wait(full_k(s), phase);
        mbar_wait(full_v(prev), prev_phase);
        turn_begin();
        issue_s(s);
        issue_pv(prev);
        turn_end(false);
        wgmma_wait<1>();  // S is in; P V may still run
        softmax_step(k0, k1);
        wgmma_wait<0>();
        fence_accumulator(acc[0]);
        fence_operand(pa);
        release(empty(prev));
        rescale_rows(acc, alpha);
        make_p(k0);
        prev = s;
        prev_phase = phase;
      }
      release(q_empty);  // every S of this item is done: the producer may load the next Q
      mbar_wait(full_v(prev), prev_phase);
      turn_begin();
      issue_pv(prev);
      turn_end(true);
      wgmma_wait<0>();
      fence_accumulator(acc[0]);
      fence_operand(pa);
      release(empty(prev));
    } else {
      release(q_empty);
    }

    uint16_t* o = p.o_head<uint16_t>(tile.b, tile.h);
    float* lse = p.lse_row<float>(tile.b, tile.h);
    finish_rows(acc, m, l, sd.sl2, p, lse, wr0, g, t, [&](int64_t i, int dt, float x0, float x1) {
      *reinterpret_cast<uint32_t*>(o + i * p.o_seq_stride + dt * 8 + 2 * t) = pack2<T>(x0, x1);
    });
  }
#else
  __trap();  // built without sm_90a code; the dispatcher never picks this kernel then
#endif
}

// persistent: one block per SM walks the work items (the next item's loads overlap this one's
// last products and output); otherwise one block per item.
template <typename T, typename Cfg>
void launch_forward(const AttentionParams& p, bool persistent, bool head_major,
                    cudaStream_t stream) {
  constexpr int D = Cfg::D;
  const int64_t items = (p.Nq + Cfg::kBM - 1) / Cfg::kBM * p.Hq * p.B;
  FG_CHECK(items < (int64_t(1) << 31), "flash_attention_forward_cuda: ", items,
           " query tiles are too many for one launch; split the batch");
  const int64_t sms = cuda_device_info(cuda_current_device()).sm_count;
  const unsigned blocks = unsigned(persistent && sms > 0 && sms < items ? sms : items);
  ForwardMaps maps;
  maps.q = head_tensor_map(p.q, p.B, p.Nq, p.Hq, D, p.q_batch_stride, p.q_seq_stride,
                           p.q_head_stride, Cfg::kBM);
  maps.k = head_tensor_map(p.k, p.B, p.Nk, p.Hkv, D, p.k_batch_stride, p.k_seq_stride,
                           p.k_head_stride, Cfg::kBN);
  maps.v = head_tensor_map(p.v, p.B, p.Nk, p.Hkv, D, p.v_batch_stride, p.v_seq_stride,
                           p.v_head_stride, Cfg::kBN);
  auto kernel = forward_kernel<T, Cfg>;
  set_smem_limit(kernel, Cfg::kSmem);
  if (blocks == 0) return;
  kernel<<<blocks, Cfg::kThreads, Cfg::kSmem, stream>>>(p, maps, head_major);
  FG_LAUNCH_CHECK();
}

// FLASHGRAD_TMA_VARIANT (A/B measurements): "sync" drops the ping-pong, "np" launches one block
// per work item, "hm" orders the items head by head. The default (the ping-pong, persistent,
// tile-major) won call q's A/B on the H100 (bench/RESULTS.md).
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  check_grid(p, "flash_attention_forward_cuda");
  enum Variant { kDefault, kSync, kOneBlockPerItem, kHeadMajor };
  static const int variant =
      env_choice("FLASHGRAD_TMA_VARIANT", {"default", "sync", "np", "hm"});
  const bool persistent = variant != kOneBlockPerItem, head_major = variant == kHeadMajor;
  if (variant == kSync)
    return launch_forward<T, ForwardConfig<D, false>>(p, persistent, head_major, stream);
  launch_forward<T, ForwardConfig<D, true>>(p, persistent, head_major, stream);
}

}  // namespace sm90ws
}  // namespace attn
}  // namespace fg
