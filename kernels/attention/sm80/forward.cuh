// Tensor-core FlashAttention-2 forward on mma.sync (sm_80 and later): bf16 / fp16 here
// (m16n8k16), fp32 in forward_tf32x3.cuh; the launcher sm80::run_forward<T, D> takes both.
//
// It computes exactly the function of params.h (same mask rule, same dropout bits), so every
// test that holds for the SIMT forward holds for this one to bf16/fp16 rounding.
//
// Work partitioning (FlashAttention-2): one block per (query tile of kBM rows, query head,
// batch), kWarps warps, each warp owning kMT * 16 consecutive query rows of the tile for the
// whole key loop (no split of the key dimension inside a block, so no cross-warp reduction).
// The Q tile is loaded once; K and V tiles of kBN keys stream through two cp.async stages
// (the pipeline of QueryTile::for_each_key_tile, written out in the kernel).
//
// Per key tile and warp: S = Q K^T with mma.sync (A = Q, B = K, both through ldmatrix);
// masking only on tiles that need it; the online softmax in base 2 with the softmax scale folded
// into one FFMA per element; dropout from attention_dropout_keep's Philox counter, one Philox
// call per 16 elements handed to the lanes that hold them (common/dropout.cuh); then O += P V
// where P is re-packed straight from the S accumulators into A fragments (no shared-memory
// round trip) and V comes through ldmatrix.trans. The row sums stay per-thread partial sums
// until the end.
//
// Tile skipping: a key tile whose TileVisibility (causal + block mask) is empty for the whole
// query tile is never loaded; one that is empty for a warp's rows is skipped by that warp; the
// key loop stops at the causal end. Query tiles are visited heaviest first (reversed
// blockIdx.x) so that causal blocks finish together.
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
#include "kernels/attention/sm80/config.cuh"
#include "kernels/attention/sm80/forward_tf32x3.cuh"

namespace fg {
namespace attn {
namespace sm80 {

template <typename T, int D>
__global__ void __launch_bounds__(Config<D>::kFwdWarps * 32, 2)
    forward_kernel(const AttentionParams p) {
  using Cfg = Config<D>;
  constexpr int kThreads = Cfg::kFwdWarps * 32, kMT = Cfg::kFwdMT, kBN = Cfg::kFwdBN;
  constexpr int kRowsW = kMT * 16;  // query rows per warp
  constexpr int kBM = Cfg::kFwdBM;  // query rows per block
  constexpr int kNT = kBN / 8;      // 8-key column tiles of S
  constexpr int kDT = D / 8;        // 8-dim column tiles of O
  static_assert(D % 16 == 0 && kBN % 16 == 0, "tile shape");
  // A warp's rows and a key tile must each fall inside one block-mask tile, so that the mask
  // inside a non-empty (warp, key tile) pair is only causal + bounds (see mask_scores).
  static_assert(kBlockMaskTileQ % kRowsW == 0 && kBlockMaskTileK % kBN == 0,
                "tiles must divide the 64 x 64 block-mask tile");

  extern __shared__ __align__(128) unsigned char tc_smem[];
  // Shared addresses (bytes): Q [kBM][W], then 2 stages of K [kBN][W], then 2 of V, where
  // W = tile_dim(D) (D = 96 rows padded to 128; the loops below run over D).
  constexpr uint32_t kRowBytes = tile_dim(D) * 2, kStageBytes = kBN * kRowBytes;
  const uint32_t sQ = align1024(smem_u32(tc_smem));
  const uint32_t sK = sQ + kBM * kRowBytes;
  const uint32_t sV = sK + 2 * kStageBytes;

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;  // mma fragment row group and thread in group
  const QueryTile<kBM, kBN> tile(p);
  const int64_t q0 = tile.q0, h = tile.h, b = tile.b, hk = tile.hk, nkt = tile.nkt;
  const uint16_t* k = p.k_head<const uint16_t>(b, hk);
  const uint16_t* v = p.v_head<const uint16_t>(b, hk);
  const SoftmaxDropout sd(p);
  const uint32_t ph = uint32_t(p.batch_index_base + b) * uint32_t(p.Hq) + uint32_t(h);

  // The key-tile pipeline is written out here, as in the sm90 forward, rather than taken from
  // KeyValueStream: the forwards' loop bodies are short enough for the shared form to cost
  // a few percent.
  load_tile_async<D, kBM, kThreads>(sQ, p.q_head<const uint16_t>(b, h), p.q_seq_stride, q0, p.Nq);
  cp_async_commit();
  auto next_visible = [&](int64_t kt) { return tile.next_visible(p, kt); };
  int64_t kt = next_visible(0);
  if (kt < nkt) {
    load_tile_async<D, kBN, kThreads>(sK, k, p.k_seq_stride, kt * kBN, p.Nk);
    load_tile_async<D, kBN, kThreads>(sV, v, p.v_seq_stride, kt * kBN, p.Nk);
  }
  cp_async_commit();

  float acc[kMT][kDT][4], m[kMT][2], l[kMT][2];
  softmax_init(m, l, acc);

  const int wrow = warp * kRowsW;  // first row of this warp inside the tile
  const uint32_t qLane = sQ + lane_offset_a<kRowBytes>(lane, wrow);
  const uint32_t kLaneOff = lane_offset_b<kRowBytes>(lane);
  const uint32_t vLaneOff = lane_offset_bt<kRowBytes>(lane);
  const int64_t wr0 = q0 + wrow, wr1 = wr0 + kRowsW < p.Nq ? wr0 + kRowsW : p.Nq;
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
      const uint32_t kLane = kLaneOff + sK + stage * kStageBytes;
      const uint32_t vLane = vLaneOff + sV + stage * kStageBytes;
      float s[kMT][kNT][4];
      mma_scores<T, kMT, kNT, D, kRowBytes>(s, qLane, kLane);
      if (wvis == TileVisibility::partial || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      online_softmax(s, m, l, acc, sd.sl2);
      if (sd.dropout) apply_dropout(s, wr0, k0, g, t, ph, uint32_t(p.offset), sd);
      mma_pv<T, kMT, kNT, kDT, kRowBytes>(acc, s, vLane);
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
}

template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  using Cfg = Config<D>;
  check_grid(p, "flash_attention_forward_cuda");
  if constexpr (std::is_same_v<T, float>) {
    auto kernel = forward_tf32x3_kernel<D>;
    set_smem_limit(kernel, Cfg::kTf32Smem);
    const dim3 grid(unsigned((p.Nq + Cfg::kTf32BM - 1) / Cfg::kTf32BM), unsigned(p.Hq),
                    unsigned(p.B));
    kernel<<<grid, Cfg::kTf32Warps * 32, Cfg::kTf32Smem, stream>>>(p);
  } else {
    auto kernel = forward_kernel<T, D>;
    set_smem_limit(kernel, Cfg::kFwdSmem);
    const dim3 grid(unsigned((p.Nq + Cfg::kFwdBM - 1) / Cfg::kFwdBM), unsigned(p.Hq),
                    unsigned(p.B));
    kernel<<<grid, Cfg::kFwdWarps * 32, Cfg::kFwdSmem, stream>>>(p);
  }
  FG_LAUNCH_CHECK();
}

}  // namespace sm80
}  // namespace attn
}  // namespace fg
