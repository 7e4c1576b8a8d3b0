// SIMT backward kernels and their launcher simt::run_backward<T, D>, in the launch sequence of
// common/backward.cuh.
//
// dK/dV kernel: one block per (key tile, kv head, batch), looping over the query heads of the
// GQA group and over their query tiles (from the first one the causal diagonal lets see the key
// tile); each warp owns key rows, and dK, dV stay in its registers. The scores are formed
// transposed (rows = keys): S^T = K Q^T and dP^T = V dO^T, then P = exp(S - LSE), dV += (P Z /
// (1-p)) dO, dS = P (dP Z / (1-p) - D_i), dK += dS^T Q, and in the atomic mode dQ += dS K into
// the accumulator.
// dQ kernel (deterministic mode): one block per (query tile, query head, batch), laid out as
// the forward, recomputing P and dS for its rows and summing dQ += dS K in registers.
#pragma once
#include "kernels/attention/simt/common.cuh"

namespace fg {
namespace attn {
namespace simt {

// The atomic dQ step of the dK/dV kernel: dQ += dS K for query tile q0 of head h, from sS
// (dS * scale, [key][query]). Every warp needs every key row's dS, so the caller has waited
// for all warps. Warp w takes query rows w, w + kWarps, ...; lanes take dims, so the adds are
// coalesced.
template <typename Cfg, int D, typename A>
FG_ATTN_DEV void atomic_dq_step(A* dq_accum, const AttentionParams& p, const A* sS, const A* sK,
                                int64_t b, int64_t h, int64_t q0, int warp, int lane) {
  constexpr int kTile = Cfg::kTile, DL = Cfg::DL;
  A* dqh = dq_accum + (b * p.Hq + h) * p.Nq * D;
  for (int qc = warp; qc < kTile; qc += Cfg::kWarps) {
    if (q0 + qc >= p.Nq) break;
    A part[DL];
#pragma unroll
    for (int t = 0; t < DL; ++t) part[t] = 0;
#pragma unroll 4
    for (int kr = 0; kr < kTile; ++kr) {
      const A ds = sS[kr * kTile + qc];  // broadcast
#pragma unroll
      for (int t = 0; t < DL; ++t) part[t] += ds * sK[kr * D + lane + 32 * t];
    }
#pragma unroll
    for (int t = 0; t < DL; ++t) atomicAdd(dqh + (q0 + qc) * D + lane + 32 * t, part[t]);
  }
}

// dK, dV (and, with kAtomicDQ, the dQ contributions) of one key tile of one kv head.
template <typename T, int D, bool kAtomicDQ>
__global__ void __launch_bounds__(Config<T, D>::kThreads)
    dkdv_kernel(const AttentionParams p, const typename Acc<T>::type* Di,
                typename Acc<T>::type* dq_accum) {
  using Cfg = Config<T, D>;
  using A = typename Cfg::A;
  constexpr int kTile = Cfg::kTile, R = Cfg::R, C = Cfg::C, DL = Cfg::DL, QS = Cfg::kPad;
  extern __shared__ __align__(16) unsigned char attention_smem[];
  A* sK = reinterpret_cast<A*>(attention_smem);
  A* sV = sK + kTile * D;
  A* sQ = sV + kTile * D;
  A* sdO = sQ + kTile * QS;
  A* sS = sdO + kTile * QS;  // [key][query]: P * Z / (1-p), then dS * scale
  A* sLse = sS + kTile * kTile;
  A* sDi = sLse + kTile;

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t k0 = int64_t(blockIdx.x) * kTile, hk = blockIdx.y, b = blockIdx.z;
  const int64_t k1 = min64(k0 + kTile, p.Nk);
  const int64_t group = p.Hq / p.Hkv;
  const Constants<A> sd = constants<A>(p.softmax_scale, p.dropout_p);
  load_rows<T, A, D, kTile, D, Cfg::kThreads>(sK, p.k_head<const T>(b, hk), p.k_seq_stride, k0,
                                              p.Nk);
  load_rows<T, A, D, kTile, D, Cfg::kThreads>(sV, p.v_head<const T>(b, hk), p.v_seq_stride, k0,
                                              p.Nk);

  A dK[R][DL], dV[R][DL];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < DL; ++t) dK[r][t] = dV[r][t] = 0;

  // Query tiles before the one holding the first row that sees key k0 are empty.
  const int64_t qstart = first_query_row(p, k0) / kTile * kTile;
  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const T* q = p.q_head<const T>(b, h);
    const T* dO = p.do_head<const T>(b, h);
    const A* lse = p.lse_row<const A>(b, h);
    const A* Dh = Di + (b * p.Hq + h) * p.Nq;
    auto visibility = [&](int64_t q0, int64_t q1) { return tile_visibility(p, h, q0, q1, k0, k1); };
    auto load = [&](int64_t q0) {
      load_rows<T, A, D, kTile, QS, Cfg::kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);
      load_rows<T, A, D, kTile, QS, Cfg::kThreads>(sdO, dO, p.do_seq_stride, q0, p.Nq);
      for (int e = int(threadIdx.x); e < kTile; e += Cfg::kThreads) {
        sLse[e] = q0 + e < p.Nq ? lse[q0 + e] : A(0);
        sDi[e] = q0 + e < p.Nq ? Dh[q0 + e] : A(0);
      }
    };
    for_each_visible_tile<kTile>(qstart, p.Nq, p.Nq, visibility, load,
                                 [&](int64_t q0, int64_t, TileVisibility vis) {
      // S^T = K Q^T and dP^T = V dO^T for this warp's key rows and this lane's query columns.
      A s[R][C], dp[R][C];
      tile_products2<R, C, D, QS>(s, dp, sK, sQ, sV, sdO, warp, lane);

      // P = exp(S - LSE) (0 where masked), Z / (1 - p); sS <- P Z / (1 - p) for dV.
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t j = k0 + warp * R + r;
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int qc = lane + 32 * c;
          const int64_t i = q0 + qc;
          const bool ok = element_visible(p, vis, h, i, j);
          const A pv = ok ? exp_acc(s[r][c] * sd.scale - sLse[qc]) : A(0);
          A zs = 1;
          if (sd.dropout && ok) zs = sd.keep(p, b, h, i, j) ? sd.keep_scale : A(0);
          s[r][c] = pv;
          dp[r][c] *= zs;
          sS[(warp * R + r) * kTile + qc] = pv * zs;
        }
      }
      __syncwarp();
      accumulate_rows<R, DL, kTile, QS>(dV, sS, sdO, warp, lane);  // dV += (P Z / (1-p)) dO
      __syncwarp();  // done reading P before it is overwritten with dS

      // dS = P (dP Z / (1-p) - D_i), stored with the softmax scale folded in.
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int qc = lane + 32 * c;
          sS[(warp * R + r) * kTile + qc] = s[r][c] * (dp[r][c] - sDi[qc]) * sd.scale;
        }
      __syncwarp();
      accumulate_rows<R, DL, kTile, QS>(dK, sS, sQ, warp, lane);  // dK += dS^T Q (sS holds dS^T)

      if constexpr (kAtomicDQ) {
        __syncthreads();
        atomic_dq_step<Cfg, D>(dq_accum, p, sS, sK, b, h, q0, warp, lane);
      }
    });
  }

  store_rows(k0 + warp * R, p.Nk, lane, p.dk_head<T>(b, hk), p.dk_seq_stride, dK,
             p.dv_head<T>(b, hk), p.dv_seq_stride, dV);
}

// Deterministic mode: dQ of one query tile, summed over key tiles in order, no atomics.
template <typename T, int D>
__global__ void __launch_bounds__(Config<T, D>::kThreads)
    dq_kernel(const AttentionParams p, const typename Acc<T>::type* Di) {
  using Cfg = Config<T, D>;
  using A = typename Cfg::A;
  constexpr int kTile = Cfg::kTile, R = Cfg::R, C = Cfg::C, DL = Cfg::DL, KS = Cfg::kPad;
  extern __shared__ __align__(16) unsigned char attention_smem[];
  A* sQ = reinterpret_cast<A*>(attention_smem);
  A* sdO = sQ + kTile * D;
  A* sK = sdO + kTile * D;
  A* sV = sK + kTile * KS;
  A* sS = sV + kTile * KS;  // [query][key], dS * scale

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t q0 = int64_t(blockIdx.x) * kTile, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q1 = min64(q0 + kTile, p.Nq);
  // The constants as locals: through the Constants struct ptxas allocates 20 more registers
  // in this kernel (f32, D 32: 208 -> 230).
  const A scale = A(p.softmax_scale);
  const bool dropout = p.dropout_p > 0.0;
  const uint32_t threshold = attention_dropout_threshold(p.dropout_p);
  const A keep_scale = A(attention_dropout_keep_scale(p.dropout_p));
  const T* k = p.k_head<const T>(b, hk);
  const T* v = p.v_head<const T>(b, hk);
  const A* lse = p.lse_row<const A>(b, h);
  const A* Dh = Di + (b * p.Hq + h) * p.Nq;
  load_rows<T, A, D, kTile, D, Cfg::kThreads>(sQ, p.q_head<const T>(b, h), p.q_seq_stride, q0,
                                              p.Nq);
  load_rows<T, A, D, kTile, D, Cfg::kThreads>(sdO, p.do_head<const T>(b, h), p.do_seq_stride, q0,
                                              p.Nq);

  A row_lse[R], row_di[R], dQ[R][DL];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = q0 + warp * R + r;
    row_lse[r] = i < p.Nq ? lse[i] : A(0);
    row_di[r] = i < p.Nq ? Dh[i] : A(0);
#pragma unroll
    for (int t = 0; t < DL; ++t) dQ[r][t] = 0;
  }

  const int64_t kend = key_end(p, q1);
  for (int64_t k0 = 0; k0 < kend; k0 += kTile) {
    const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, min64(k0 + kTile, p.Nk));
    if (vis == TileVisibility::empty) continue;
    __syncthreads();
    load_rows<T, A, D, kTile, KS, Cfg::kThreads>(sK, k, p.k_seq_stride, k0, p.Nk);
    load_rows<T, A, D, kTile, KS, Cfg::kThreads>(sV, v, p.v_seq_stride, k0, p.Nk);
    __syncthreads();
    A s[R][C], dp[R][C];
    tile_products2<R, C, D, KS>(s, dp, sQ, sK, sdO, sV, warp, lane);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = q0 + warp * R + r;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t j = k0 + lane + 32 * c;
        A ds = 0;
        if (element_visible(p, vis, h, i, j)) {
          const A pv = exp_acc(s[r][c] * scale - row_lse[r]);
          A zs = 1;
          if (dropout)
            zs = attention_dropout_keep(p.seed, p.offset, uint32_t(p.batch_index_base + b), uint32_t(h), uint32_t(p.Hq),
                                        uint32_t(i), uint32_t(j), threshold)
                     ? keep_scale
                     : A(0);
          ds = pv * (dp[r][c] * zs - row_di[r]) * scale;
        }
        sS[(warp * R + r) * kTile + lane + 32 * c] = ds;
      }
    }
    __syncwarp();
    accumulate_rows<R, DL, kTile, KS>(dQ, sS, sK, warp, lane);  // dQ += dS K
  }

  store_rows(q0 + warp * R, p.Nq, lane, p.dq_head<T>(b, h), p.dq_seq_stride, dQ);
}

template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  using Cfg = Config<T, D>;
  using A = typename Cfg::A;
  auto launch_dkdv = [&](auto atomic_dq, A* Di, A* dq_accum) {
    auto kernel = dkdv_kernel<T, D, decltype(atomic_dq)::value>;
    set_smem_limit(kernel, Cfg::kDkdvSmem);
    const dim3 grid(unsigned((p.Nk + Cfg::kTile - 1) / Cfg::kTile), unsigned(p.Hkv), unsigned(p.B));
    kernel<<<grid, Cfg::kThreads, Cfg::kDkdvSmem, stream>>>(p, Di, dq_accum);
    FG_LAUNCH_CHECK();
  };
  auto launch_dq = [&](A* Di) {
    auto kernel = dq_kernel<T, D>;
    set_smem_limit(kernel, Cfg::kDqSmem);
    const dim3 grid(unsigned((p.Nq + Cfg::kTile - 1) / Cfg::kTile), unsigned(p.Hq), unsigned(p.B));
    kernel<<<grid, Cfg::kThreads, Cfg::kDqSmem, stream>>>(p, Di);
    FG_LAUNCH_CHECK();
  };
  run_backward_sequence<T, D, A>(p, stream, launch_dkdv, launch_dq);
}

}  // namespace simt
}  // namespace attn
}  // namespace fg
