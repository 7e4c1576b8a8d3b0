// Tensor-core FlashAttention-2 forward for bf16 / fp16 (mma.sync m16n8k16, sm_80 and later) and
// for fp32 (3xTF32, mma.sync m16n8k8; further down), with their launchers
// run_attention_tc_forward<T, D> and run_attention_tf32x3_forward<D>, and the softmax, masking,
// dropout and output steps that the wgmma forward (attention_wgmma_forward.cuh) shares.
//
// Included by the instantiation files kernels/attention/instantiations/attention_tc_forward_*.cu
// (one dtype and head dim per file); attention_cuda.cu picks these kernels for D in {64, 128}
// when tc_forward_usable() says the pointers and strides allow it (bf16/f16 at D 64 go to the
// wgmma kernel instead on a Hopper GPU), unless the environment variable
// FLASHGRAD_ATTENTION_SIMT=1 asks for the SIMT kernels of attention_kernels.cuh (which remain
// the reference, and the path for f64 and D = 32).
//
// It computes exactly the function of params.h (same mask rule, same dropout bits), so every
// test that holds for the SIMT forward holds for this one to bf16/fp16 rounding.
//
// Work partitioning (FlashAttention-2): one block per (query tile of kBM rows, query head,
// batch), kWarps warps, each warp owning kMT * 16 consecutive query rows of the tile for the
// whole key loop (no split of the key dimension inside a block, so no cross-warp reduction).
// The Q tile is loaded once; K and V tiles of kBN keys are streamed through shared memory with
// cp.async into two stages, the load of the next visible tile overlapping the math on the
// current one (one __syncthreads per tile). Shared tiles are XOR-swizzled by 16-byte chunk
// (chunk c of row r lives at chunk c ^ (r % 8)) so that ldmatrix reads are conflict-free.
//
// Per key tile and warp: S = Q K^T with mma.sync (A = Q via ldmatrix, B = K via ldmatrix);
// masking only on tiles that need it; the online softmax in base 2 with the softmax scale folded
// into one FFMA per element (exp2(s * scale * log2 e - m * scale * log2 e)); dropout from
// attention_dropout_keep's Philox counter, one Philox call per 4 columns shared between the
// two threads that hold them; then O += P V where P is re-packed straight from the S
// accumulators into A fragments (no shared-memory round trip) and V comes through
// ldmatrix.trans. The row sums stay per-thread partial sums until the end.
//
// Tile skipping: a key tile whose TileVisibility (causal + block mask) is empty for the whole
// query tile is never loaded; one that is empty for a warp's rows is skipped by that warp; the
// key loop stops at the causal end. Query tiles are visited heaviest first (reversed
// blockIdx.x) so that causal blocks finish together.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/attention/attention.h"
#include "kernels/attention/common/tc.cuh"
#include "kernels/attention/params.h"
#include "core/half.h"
#include "core/philox.h"
#include "core/cuda_check.h"
#include "core/error.h"

namespace fg {
namespace attn {
namespace tc {

// ---------------------------------------------------------------------------------------------
// Configurations. kBM = kWarps * kMT * 16 query rows per block, kBN keys per streamed tile.

// (warps, m16 tiles per warp, keys per tile); overridable with -D for experiments.
#ifndef FG_TC_D64_WARPS
#define FG_TC_D64_WARPS 4
#define FG_TC_D64_MT 2
#define FG_TC_D64_BN 64
#endif
#ifndef FG_TC_D128_WARPS
#define FG_TC_D128_WARPS 4
#define FG_TC_D128_MT 2
#define FG_TC_D128_BN 64
#endif
template <int kWarps_, int kMT_, int kBN_> struct TcShape {
  static constexpr int kWarps = kWarps_, kMT = kMT_, kBN = kBN_;
};
template <int D> struct TcConfig;
template <> struct TcConfig<64> : TcShape<FG_TC_D64_WARPS, FG_TC_D64_MT, FG_TC_D64_BN> {};
template <> struct TcConfig<128> : TcShape<FG_TC_D128_WARPS, FG_TC_D128_MT, FG_TC_D128_BN> {};

template <int D, int kBM, int kBN> constexpr size_t tc_forward_smem_bytes() {
  // Q, 2 stages of K and V, and 1 KB of slack to align the base to 1024 bytes.
  return sizeof(uint16_t) * size_t(kBM * D + 2 * 2 * kBN * D) + 1024;
}

// ---------------------------------------------------------------------------------------------
// Steps on a warp's score tile, shared by the 16-bit kernel and the fp32 (3xTF32) one. The tile
// is kMT m16 row tiles x kNT n8 column tiles of mma accumulators: element e of s[mi][nt] is
// query row wr0 + 16 mi + g (+8 for e >= 2), key k0 + 8 nt + 2t (+1 for odd e).

// Mask, where the tile is partial for the warp or runs past Nk. The warp's rows and the key tile
// each lie inside one 64 x 64 block-mask tile (the kernels static_assert it), and an empty pair
// was skipped, so what is left is causal and Nk: row i keeps columns j < lim(i) =
// min(Nk, i + 1 + Nk - Nq).
template <int kMT, int kNT>
FG_TC_DEV void mask_scores(float (&s)[kMT][kNT][4], const AttentionParams& p, int64_t wr0,
                           int64_t k0, int g, int t) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int64_t i = wr0 + mi * 16 + g + hr * 8;
      int64_t lim = p.Nk;
      if (p.causal && i + 1 + p.Nk - p.Nq < lim) lim = i + 1 + p.Nk - p.Nq;
      lim -= k0;  // relative to the tile, clamp into [0, 8 kNT]
      const int rel = lim < 0 ? 0 : (lim > 8 * kNT ? 8 * kNT : int(lim));
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c)
          if (nt * 8 + 2 * t + c >= rel) s[mi][nt][2 * hr + c] = -INFINITY;
    }
}

// Online softmax in base 2 (a row's four owners are the four threads of a quad): updates the
// running max m and the per-thread partial sums l, rescales acc, and turns s into
// exp2(s * sl2 - m * sl2).
template <int kMT, int kNT, int kDT>
FG_TC_DEV void online_softmax(float (&s)[kMT][kNT][4], float (&m)[kMT][2], float (&l)[kMT][2],
                              float (&acc)[kMT][kDT][4], float sl2) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float mx = m[mi][hr];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        mx = fmaxf(mx, fmaxf(s[mi][nt][2 * hr], s[mi][nt][2 * hr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // A row that has seen no visible key yet keeps m = -inf; subtracting 0 then keeps
      // exp2(-inf) = 0 instead of NaN.
      const float base = mx == -INFINITY ? 0.f : mx * sl2;
      const float alpha = fast_exp2(m[mi][hr] * sl2 - base);
      m[mi][hr] = mx;
      l[mi][hr] *= alpha;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        acc[mi][dt][2 * hr] *= alpha;
        acc[mi][dt][2 * hr + 1] *= alpha;
      }
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float pv = fast_exp2(fmaf(s[mi][nt][2 * hr + c], sl2, -base));
          l[mi][hr] += pv;  // undropped, as the softmax denominator must be
          s[mi][nt][2 * hr + c] = pv;
        }
    }
}

// Dropout on the probabilities (after the row sums took them undropped). Columns 4u..4u+3 of a
// row share one Philox call (word j % 4 per column). Threads t and t^1 hold the same four
// columns (2 each) of rows g and g+8: the even one draws row g, the odd one row g+8, and each
// hands the other the two words it needs.
template <int kMT, int kNT>
FG_TC_DEV void apply_dropout(float (&s)[kMT][kNT][4], int64_t wr0, int64_t k0, int g, int t,
                             uint32_t ph, uint32_t offset, const SoftmaxDropout& sd) {
  const bool odd = (t & 1) != 0;
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const uint32_t i = uint32_t(wr0 + mi * 16 + g + (odd ? 8 : 0));
      const uint32_t grp = uint32_t((k0 + nt * 8) >> 2) + uint32_t(t >> 1);
      const Philox4 r = philox4x32_10(grp, i, ph, offset, sd.pk0, sd.pk1);
      const uint32_t send0 = odd ? r.x[0] : r.x[2], send1 = odd ? r.x[1] : r.x[3];
      const uint32_t recv0 = __shfl_xor_sync(0xffffffffu, send0, 1);
      const uint32_t recv1 = __shfl_xor_sync(0xffffffffu, send1, 1);
      // Words for (row g, col 2t), (row g, 2t+1), (row g+8, 2t), (row g+8, 2t+1).
      const uint32_t w0 = odd ? recv0 : r.x[0], w1 = odd ? recv1 : r.x[1];
      const uint32_t w2 = odd ? r.x[2] : recv0, w3 = odd ? r.x[3] : recv1;
      s[mi][nt][0] *= w0 >= sd.threshold ? sd.keep_scale : 0.f;
      s[mi][nt][1] *= w1 >= sd.threshold ? sd.keep_scale : 0.f;
      s[mi][nt][2] *= w2 >= sd.threshold ? sd.keep_scale : 0.f;
      s[mi][nt][3] *= w3 >= sd.threshold ? sd.keep_scale : 0.f;
    }
}

// O = acc / l and LSE = ln 2 * (m * sl2 + log2 l); a row that saw no key gets O = 0 and
// LSE = -inf. store(i, dt, x0, x1) writes dims 8 dt + 2t and 8 dt + 2t + 1 of row i.
template <int kMT, int kDT, typename Store>
FG_TC_DEV void finish_rows(const float (&acc)[kMT][kDT][4], const float (&m)[kMT][2],
                           const float (&l)[kMT][2], float sl2, const AttentionParams& p,
                           float* lse, int64_t wr0, int g, int t, Store store) {
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float lsum = l[mi][hr];
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 1);
      lsum += __shfl_xor_sync(0xffffffffu, lsum, 2);
      const int64_t i = wr0 + mi * 16 + g + hr * 8;
      if (i >= p.Nq) continue;
      const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt)
        store(i, dt, acc[mi][dt][2 * hr] * inv, acc[mi][dt][2 * hr + 1] * inv);
      if (t == 0)
        lse[i] = lsum > 0.f ? (m[mi][hr] * sl2 + log2f(lsum)) * 0.6931471805599453f : -INFINITY;
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel

template <typename T, int D, int kWarps, int kMT, int kBN>
__global__ void __launch_bounds__(kWarps * 32, 2)
    attention_tc_forward_kernel(const AttentionParams p) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kRowsW = kMT * 16;      // query rows per warp
  constexpr int kBM = kWarps * kRowsW;  // query rows per block
  constexpr int kNT = kBN / 8;          // 8-key column tiles of S
  constexpr int kDT = D / 8;            // 8-dim column tiles of O
  static_assert(D % 16 == 0 && kBN % 16 == 0, "tile shape");
  // A warp's rows and a key tile must each fall inside one block-mask tile, so that the mask
  // inside a non-empty (warp, key tile) pair is only causal + bounds (see the masking step).
  static_assert(kBlockMaskTileQ % kRowsW == 0 && kBlockMaskTileK % kBN == 0,
                "tiles must divide the 64 x 64 block-mask tile");

  extern __shared__ __align__(128) unsigned char tc_smem[];
  // Shared addresses (bytes): Q [kBM][D], then 2 stages of K [kBN][D], then 2 of V.
  constexpr uint32_t kRowBytes = D * 2, kStageBytes = kBN * D * 2;
  const uint32_t sQ = (smem_u32(tc_smem) + 1023u) & ~1023u;
  const uint32_t sK = sQ + kBM * kRowBytes;
  const uint32_t sV = sK + 2 * kStageBytes;

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;  // mma fragment row group and thread in group
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

  float acc[kMT][kDT][4];
  float m[kMT][2], l[kMT][2];
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) m[mi][hr] = -INFINITY, l[mi][hr] = 0.f;
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][dt][e] = 0.f;
  }

  const int wrow = warp * kRowsW;  // first row of this warp inside the tile
  // Per-lane ldmatrix offsets at head-dim chunk 0/1 (see the swizzle note): all rows below
  // are 8-aligned plus (lane & 7), so the swizzle term is (chunk ^ (lane & 7)).
  //   Q  (A, x4): rows wrow + (lane & 15), chunk lane >> 4
  //   K  (B, x4): rows (lane & 7) + 8 (lane >> 4), chunk (lane >> 3) & 1
  //   V  (B, x4.trans): rows (lane & 7) + 8 ((lane >> 3) & 1), chunk lane >> 4
  const uint32_t qLane = sQ + uint32_t((wrow + (lane & 15)) * kRowBytes +
                                       (((lane >> 4) ^ (lane & 7)) << 4));
  const uint32_t kLaneOff = uint32_t(((lane & 7) + ((lane >> 4) << 3)) * kRowBytes +
                                     ((((lane >> 3) & 1) ^ (lane & 7)) << 4));
  const uint32_t vLaneOff = uint32_t(((lane & 7) + (((lane >> 3) & 1) << 3)) * kRowBytes +
                                     (((lane >> 4) ^ (lane & 7)) << 4));
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

      // S = Q K^T
      float s[kMT][kNT][4];
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mi][nt][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t a[kMT][4];
#pragma unroll
        for (int mi = 0; mi < kMT; ++mi)
          ldmatrix_x4(a[mi], (qLane ^ uint32_t(ks << 5)) + mi * 16 * kRowBytes);
#pragma unroll
        for (int np = 0; np < kNT / 2; ++np) {
          uint32_t bk[4];  // keys np*16 + [0, 8) then [8, 16); dims ks*16 + [0, 8), [8, 16)
          ldmatrix_x4(bk, (kLane ^ uint32_t(ks << 5)) + np * 16 * kRowBytes);
#pragma unroll
          for (int mi = 0; mi < kMT; ++mi) {
            mma_16816<T>(s[mi][2 * np], a[mi], bk[0], bk[1]);
            mma_16816<T>(s[mi][2 * np + 1], a[mi], bk[2], bk[3]);
          }
        }
      }

      if (wvis == TileVisibility::partial || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      online_softmax(s, m, l, acc, sd.sl2);
      if (sd.dropout) apply_dropout(s, wr0, k0, g, t, ph, uint32_t(p.offset), sd);

      // O += P V. The S accumulators of key tiles 2kk and 2kk+1 are exactly the A fragment of
      // a 16x16 P block: (row g, keys 2t..), (row g+8, keys 2t..), (row g, keys 8+2t..), ...
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        uint32_t pa[kMT][4];
#pragma unroll
        for (int mi = 0; mi < kMT; ++mi) {
          pa[mi][0] = pack2<T>(s[mi][2 * kk][0], s[mi][2 * kk][1]);
          pa[mi][1] = pack2<T>(s[mi][2 * kk][2], s[mi][2 * kk][3]);
          pa[mi][2] = pack2<T>(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
          pa[mi][3] = pack2<T>(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < kDT / 2; ++dp) {
          uint32_t bv[4];  // keys kk*16 + [0, 8), [8, 16) for dims dp*16 + [0, 8), then [8, 16)
          ldmatrix_x4_trans(bv, (vLane ^ uint32_t(dp << 5)) + kk * 16 * kRowBytes);
#pragma unroll
          for (int mi = 0; mi < kMT; ++mi) {
            mma_16816<T>(acc[mi][2 * dp], pa[mi], bv[0], bv[1]);
            mma_16816<T>(acc[mi][2 * dp + 1], pa[mi], bv[2], bv[3]);
          }
        }
      }
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
}

// ---------------------------------------------------------------------------------------------
// fp32 forward on tensor cores (3xTF32, mma.sync m16n8k8), for D in {64, 128}.
//
// The same algorithm, pipeline and tile skipping as the 16-bit kernel above, with one m16 row
// tile per warp (kBM = 16 kWarps) and fp32 tiles in shared memory, rows padded to D + 4 floats
// so that the fragment loads (plain 32-bit loads: ldmatrix moves 16-bit elements) hit 32
// different banks. Each product is split into three TF32 products (split_tf32), which keeps the
// result at about fp32 accuracy; the softmax, masking, dropout and output steps are shared.
//
// P V without a shared-memory round trip: the S accumulators give a thread keys 2t and 2t+1 of
// each 8-key column tile, while the tf32 A fragment wants k columns t and t+4. The sum over
// keys does not care about their order, so k column t stands for key 2t and k column t+4 for
// key 2t+1, in A (a0 = s0, a1 = s2, a2 = s1, a3 = s3) and in B (b0 = V[2t][g], b1 = V[2t+1][g]).

// cp.async rows [r0, r0 + kRows) of one head of an fp32 [*, N, H, D] tensor into a tile of
// rows padded to D + 4 floats at shared address `tile`; rows at or past n are zero-filled.
template <int D, int kRows, int kThreads>
FG_TC_DEV void load_tile_f32_async(uint32_t tile, const float* src, int64_t seq_stride,
                                   int64_t r0, int64_t n) {
  constexpr int kChunks = D / 4, kRowStep = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kRows % kRowStep == 0, "tile load must divide evenly");
  const int c = int(threadIdx.x) % kChunks, r = int(threadIdx.x) / kChunks;
  const uint32_t dst = tile + uint32_t((r * (D + 4) + c * 4) * 4);
  const float* gp = src + (r0 + r) * seq_stride + c * 4;
#pragma unroll
  for (int it = 0; it < kRows / kRowStep; ++it) {
    const bool valid = r0 + r + it * kRowStep < n;
    cp_async_16(dst + uint32_t(it * kRowStep * (D + 4) * 4),
                valid ? gp + it * kRowStep * seq_stride : src, valid ? 16 : 0);
  }
}

// (warps, keys per tile): D = 128 takes 32-key tiles so that two blocks fit on an SM.
template <int D> struct Tf32Config {
  static constexpr int kWarps = 4;
  static constexpr int kBN = D == 64 ? 64 : 32;
};

template <int D, int kBM, int kBN> constexpr size_t tf32_forward_smem_bytes() {
  return sizeof(float) * size_t((kBM + 2 * 2 * kBN) * (D + 4));  // Q, 2 stages of K and V
}

template <int D, int kWarps, int kBN>
__global__ void __launch_bounds__(kWarps * 32, 2)
    attention_tf32x3_forward_kernel(const AttentionParams p) {
  constexpr int kThreads = kWarps * 32;
  constexpr int kBM = kWarps * 16;  // one m16 tile per warp
  constexpr int kNT = kBN / 8, kDT = D / 8, kLd = D + 4;
  static_assert(kBlockMaskTileQ % 16 == 0 && kBlockMaskTileK % kBN == 0,
                "tiles must divide the 64 x 64 block-mask tile");

  extern __shared__ __align__(16) float tf_smem[];
  float* const fQ = tf_smem;
  float* const fK = fQ + kBM * kLd;  // 2 stages
  float* const fV = fK + 2 * kBN * kLd;  // 2 stages
  const uint32_t sQ = smem_u32(fQ), sK = smem_u32(fK), sV = smem_u32(fV);

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const ForwardTile<kBM, kBN> tile(p);
  const int64_t q0 = tile.q0, q1 = tile.q1, h = tile.h, b = tile.b, hk = tile.hk, nkt = tile.nkt;
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const float* k = static_cast<const float*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const float* v = static_cast<const float*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const SoftmaxDropout sd(p);
  const uint32_t ph = uint32_t(b) * uint32_t(p.Hq) + uint32_t(h);

  load_tile_f32_async<D, kBM, kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);
  cp_async_commit();

  auto next_visible = [&](int64_t kt) { return next_visible_key_tile<kBN>(p, h, q0, q1, nkt, kt); };
  constexpr uint32_t kStageBytes = uint32_t(kBN * kLd * 4);
  int64_t kt = next_visible(0);
  if (kt < nkt) {
    load_tile_f32_async<D, kBN, kThreads>(sK, k, p.k_seq_stride, kt * kBN, p.Nk);
    load_tile_f32_async<D, kBN, kThreads>(sV, v, p.v_seq_stride, kt * kBN, p.Nk);
  }
  cp_async_commit();

  float acc[1][kDT][4], m[1][2], l[1][2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) m[0][hr] = -INFINITY, l[0][hr] = 0.f;
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[0][dt][e] = 0.f;

  const int wrow = warp * 16;
  const int64_t wr0 = q0 + wrow, wr1 = wr0 + 16 < p.Nq ? wr0 + 16 : p.Nq;
  const float* qa = fQ + (wrow + g) * kLd + t;  // a0 at [8 ks], a2 at [8 ks + 4], +8 rows: a1, a3
  int stage = 0;

  while (kt < nkt) {
    cp_async_wait_all();
    __syncthreads();  // tile kt is in; every warp is done with the other stage
    const int64_t kt_next = next_visible(kt + 1);
    if (kt_next < nkt) {
      load_tile_f32_async<D, kBN, kThreads>(sK + (stage ^ 1) * kStageBytes, k, p.k_seq_stride,
                                            kt_next * kBN, p.Nk);
      load_tile_f32_async<D, kBN, kThreads>(sV + (stage ^ 1) * kStageBytes, v, p.v_seq_stride,
                                            kt_next * kBN, p.Nk);
    }
    cp_async_commit();

    const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
    const TileVisibility wvis =
        wr0 < p.Nq ? tile_visibility(p, h, wr0, wr1, k0, k1) : TileVisibility::empty;
    if (wvis != TileVisibility::empty) {  // warp-uniform
      const float* kS = fK + stage * kBN * kLd;
      const float* vS = fV + stage * kBN * kLd;

      // S = Q K^T
      float s[1][kNT][4];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[0][nt][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 8; ++ks) {
        uint32_t ahi[4], alo[4];
        split_tf32(qa[ks * 8], ahi[0], alo[0]);
        split_tf32(qa[8 * kLd + ks * 8], ahi[1], alo[1]);
        split_tf32(qa[ks * 8 + 4], ahi[2], alo[2]);
        split_tf32(qa[8 * kLd + ks * 8 + 4], ahi[3], alo[3]);
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const float* kb = kS + (nt * 8 + g) * kLd + ks * 8 + t;  // b0 = K[key g][dim t]
          uint32_t bh0, bl0, bh1, bl1;
          split_tf32(kb[0], bh0, bl0);
          split_tf32(kb[4], bh1, bl1);
          mma_1688_3xtf32(s[0][nt], ahi, alo, bh0, bh1, bl0, bl1);
        }
      }

      if (wvis == TileVisibility::partial || k1 - k0 < kBN) mask_scores(s, p, wr0, k0, g, t);
      online_softmax(s, m, l, acc, sd.sl2);
      if (sd.dropout) apply_dropout(s, wr0, k0, g, t, ph, uint32_t(p.offset), sd);

      // O += P V, k column t standing for key 2t and t + 4 for key 2t + 1 (see above).
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
        uint32_t phi[4], plo[4];
        split_tf32(s[0][nt][0], phi[0], plo[0]);
        split_tf32(s[0][nt][2], phi[1], plo[1]);
        split_tf32(s[0][nt][1], phi[2], plo[2]);
        split_tf32(s[0][nt][3], phi[3], plo[3]);
        const float* vb = vS + (nt * 8 + 2 * t) * kLd + g;  // b0 = V[2t][g], b1 = V[2t+1][g]
#pragma unroll
        for (int dt = 0; dt < kDT; ++dt) {
          uint32_t bh0, bl0, bh1, bl1;
          split_tf32(vb[dt * 8], bh0, bl0);
          split_tf32(vb[kLd + dt * 8], bh1, bl1);
          mma_1688_3xtf32(acc[0][dt], phi, plo, bh0, bh1, bl0, bl1);
        }
      }
    }
    stage ^= 1;
    kt = kt_next;
  }
  cp_async_wait_all();  // nothing may be in flight when the block exits

  float* o = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
  float* lse = static_cast<float*>(p.lse) + (b * p.Hq + h) * p.Nq;
  finish_rows(acc, m, l, sd.sl2, p, lse, wr0, g, t, [&](int64_t i, int dt, float x0, float x1) {
    *reinterpret_cast<float2*>(o + i * p.o_seq_stride + dt * 8 + 2 * t) = make_float2(x0, x1);
  });
}

// ---------------------------------------------------------------------------------------------
// Launcher

template <typename T, int D> void run_attention_tc_forward(const AttentionParams& p, cudaStream_t stream) {
  static_assert(std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>, "16-bit types only");
  using Cfg = TcConfig<D>;
  constexpr int kBM = Cfg::kWarps * Cfg::kMT * 16;
  FG_CHECK(p.B <= 65535 && p.Hq <= 65535, "flash_attention_forward_cuda: B=", p.B, " and Hq=",
           p.Hq, " must each be at most 65535 (they are grid dimensions); split the batch");
  auto kernel = attention_tc_forward_kernel<T, D, Cfg::kWarps, Cfg::kMT, Cfg::kBN>;
  constexpr size_t smem = tc_forward_smem_bytes<D, kBM, Cfg::kBN>();
  // Above 48 KB a kernel must opt in to the larger carve-out (per device; cheap, so every call).
  if (smem > 48 * 1024)
    FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem)));
  const dim3 grid(unsigned((p.Nq + kBM - 1) / kBM), unsigned(p.Hq), unsigned(p.B));
  kernel<<<grid, Cfg::kWarps * 32, smem, stream>>>(p);
  FG_LAUNCH_CHECK();
}

template <int D> void run_attention_tf32x3_forward(const AttentionParams& p, cudaStream_t stream) {
  using Cfg = Tf32Config<D>;
  constexpr int kBM = Cfg::kWarps * 16;
  FG_CHECK(p.B <= 65535 && p.Hq <= 65535, "flash_attention_forward_cuda: B=", p.B, " and Hq=",
           p.Hq, " must each be at most 65535 (they are grid dimensions); split the batch");
  auto kernel = attention_tf32x3_forward_kernel<D, Cfg::kWarps, Cfg::kBN>;
  constexpr size_t smem = tf32_forward_smem_bytes<D, kBM, Cfg::kBN>();
  if (smem > 48 * 1024)
    FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem)));
  const dim3 grid(unsigned((p.Nq + kBM - 1) / kBM), unsigned(p.Hq), unsigned(p.B));
  kernel<<<grid, Cfg::kWarps * 32, smem, stream>>>(p);
  FG_LAUNCH_CHECK();
}

}  // namespace tc

namespace sm80 {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) tc::run_attention_tf32x3_forward<D>(p, stream);
  else tc::run_attention_tc_forward<T, D>(p, stream);
}
}  // namespace sm80
}  // namespace attn
}  // namespace fg
