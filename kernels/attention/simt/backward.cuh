// SIMT backward kernels and their launcher (see simt/common.cuh).
#pragma once
#include "kernels/attention/simt/common.cuh"

namespace fg {
namespace attn {
namespace simt {

// ---------------------------------------------------------------------------------------------
// Backward

// D_i = rowsum(dO_i * O_i), one warp per (b, h, i) row, into Di [B, Hq, Nq].
template <typename T, int D>
__global__ void attention_bwd_dot_kernel(const AttentionParams p, typename Acc<T>::type* Di) {
  using A = typename Acc<T>::type;
  const int lane = int(threadIdx.x) % 32;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= p.B * p.Hq * p.Nq) return;  // whole warps leave together
  const int64_t i = row % p.Nq, h = (row / p.Nq) % p.Hq, b = row / (p.Nq * p.Hq);
  const T* o = static_cast<const T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride +
               i * p.o_seq_stride;
  const T* dO = static_cast<const T*>(p.do_) + b * p.do_batch_stride + h * p.do_head_stride +
                i * p.do_seq_stride;
  A sum = 0;
#pragma unroll
  for (int t = 0; t < D / 32; ++t) sum += load_acc(o + lane + 32 * t) * load_acc(dO + lane + 32 * t);
  sum = warp_sum(sum);
  if (lane == 0) Di[row] = sum;
}

// dK, dV (and, with kAtomicDQ, the dQ contributions) of one key tile of one kv head.
template <typename T, int D, int kBlockK, int kBlockQ, int kWarps, bool kAtomicDQ>
__global__ void __launch_bounds__(kWarps * 32)
    attention_bwd_dkdv_kernel(const AttentionParams p, const typename Acc<T>::type* Di,
                              typename Acc<T>::type* dq_accum) {
  using A = typename Acc<T>::type;
  constexpr int kThreads = kWarps * 32;
  constexpr int R = kBlockK / kWarps;  // key rows per warp
  constexpr int C = kBlockQ / 32;      // query columns per lane
  constexpr int DL = D / 32;
  constexpr int QS = D + 1;  // padded: lanes read different Q / dO rows at the same d
  static_assert(kBlockK % kWarps == 0 && kBlockQ % 32 == 0 && D % 32 == 0, "tile shape");

  extern __shared__ __align__(16) unsigned char attention_smem[];
  A* sK = reinterpret_cast<A*>(attention_smem);
  A* sV = sK + kBlockK * D;
  A* sQ = sV + kBlockK * D;
  A* sdO = sQ + kBlockQ * QS;
  A* sS = sdO + kBlockQ * QS;  // [Bk][Bq]: P * Z / (1-p), then dS * scale
  A* sLse = sS + kBlockK * kBlockQ;
  A* sDi = sLse + kBlockQ;

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t k0 = int64_t(blockIdx.x) * kBlockK, hk = blockIdx.y, b = blockIdx.z;
  const int64_t k1 = min64(k0 + kBlockK, p.Nk);
  const int64_t group = p.Hq / p.Hkv;
  const A scale = A(p.softmax_scale);
  const bool dropout = p.dropout_p > 0.0;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const A keep_scale = A(1.0 / (1.0 - p.dropout_p));

  const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  load_rows<T, A, D, kBlockK, D, kThreads>(sK, k, p.k_seq_stride, k0, p.Nk);
  load_rows<T, A, D, kBlockK, D, kThreads>(sV, v, p.v_seq_stride, k0, p.Nk);

  A dK[R][DL], dV[R][DL];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int t = 0; t < DL; ++t) dK[r][t] = dV[r][t] = 0;

  // Causal: the first query row that sees key k0 is k0 - (Nk - Nq); earlier tiles are empty.
  const int64_t first_row = p.causal ? max64(0, k0 - (p.Nk - p.Nq)) : 0;
  const int64_t qstart = first_row / kBlockQ * kBlockQ;

  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* dO = static_cast<const T*>(p.do_) + b * p.do_batch_stride + h * p.do_head_stride;
    const A* lse = static_cast<const A*>(p.lse) + (b * p.Hq + h) * p.Nq;
    const A* Dh = Di + (b * p.Hq + h) * p.Nq;

    for (int64_t q0 = qstart; q0 < p.Nq; q0 += kBlockQ) {
      const int64_t q1 = min64(q0 + kBlockQ, p.Nq);
      const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, k1);  // block-uniform
      if (vis == TileVisibility::empty) continue;
      __syncthreads();  // the previous tile's sQ, sdO, sS are no longer read
      load_rows<T, A, D, kBlockQ, QS, kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);
      load_rows<T, A, D, kBlockQ, QS, kThreads>(sdO, dO, p.do_seq_stride, q0, p.Nq);
      for (int e = int(threadIdx.x); e < kBlockQ; e += kThreads) {
        sLse[e] = q0 + e < p.Nq ? lse[q0 + e] : A(0);
        sDi[e] = q0 + e < p.Nq ? Dh[q0 + e] : A(0);
      }
      __syncthreads();

      // S^T = K Q^T and dP^T = V dO^T for this warp's key rows and this lane's query columns.
      A s[R][C], dp[R][C];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < C; ++c) s[r][c] = dp[r][c] = 0;
#pragma unroll 2
      for (int d = 0; d < D; ++d) {
        A qv[C], dov[C];
#pragma unroll
        for (int c = 0; c < C; ++c) {
          qv[c] = sQ[(lane + 32 * c) * QS + d];
          dov[c] = sdO[(lane + 32 * c) * QS + d];
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const A kv = sK[(warp * R + r) * D + d];  // broadcast
          const A vv = sV[(warp * R + r) * D + d];
#pragma unroll
          for (int c = 0; c < C; ++c) {
            s[r][c] += kv * qv[c];
            dp[r][c] += vv * dov[c];
          }
        }
      }

      // P = exp(S - LSE) (0 where masked), Z / (1 - p); sS <- P Z / (1 - p) for dV.
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t j = k0 + warp * R + r;
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int qc = lane + 32 * c;
          const int64_t i = q0 + qc;
          const bool ok = element_visible(p, vis, h, i, j);
          const A pv = ok ? exp_acc(s[r][c] * scale - sLse[qc]) : A(0);
          A zs = 1;
          if (dropout && ok)
            zs = attention_dropout_keep(p.seed, p.offset, uint32_t(b), uint32_t(h), uint32_t(p.Hq),
                                        uint32_t(i), uint32_t(j), threshold)
                     ? keep_scale
                     : A(0);
          s[r][c] = pv;
          dp[r][c] *= zs;
          sS[(warp * R + r) * kBlockQ + qc] = pv * zs;
        }
      }
      __syncwarp();

      // dV += (P Z / (1-p)) dO
#pragma unroll 2
      for (int qc = 0; qc < kBlockQ; ++qc) {
        A dov[DL];
#pragma unroll
        for (int t = 0; t < DL; ++t) dov[t] = sdO[qc * QS + lane + 32 * t];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const A pd = sS[(warp * R + r) * kBlockQ + qc];  // broadcast
#pragma unroll
          for (int t = 0; t < DL; ++t) dV[r][t] += pd * dov[t];
        }
      }
      __syncwarp();  // done reading P before it is overwritten with dS

      // dS = P (dP Z / (1-p) - D_i), stored with the softmax scale folded in.
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int qc = lane + 32 * c;
          sS[(warp * R + r) * kBlockQ + qc] = s[r][c] * (dp[r][c] - sDi[qc]) * scale;
        }
      __syncwarp();

      // dK += dS Q
#pragma unroll 2
      for (int qc = 0; qc < kBlockQ; ++qc) {
        A qv[DL];
#pragma unroll
        for (int t = 0; t < DL; ++t) qv[t] = sQ[qc * QS + lane + 32 * t];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const A ds = sS[(warp * R + r) * kBlockQ + qc];
#pragma unroll
          for (int t = 0; t < DL; ++t) dK[r][t] += ds * qv[t];
        }
      }

      if constexpr (kAtomicDQ) {
        // dQ += dS^T K: every warp needs every key row's dS, so wait for all warps. Warp w
        // takes query rows w, w + kWarps, ...; lanes take dims, so the adds are coalesced.
        __syncthreads();
        A* dqh = dq_accum + (b * p.Hq + h) * p.Nq * D;
        for (int qc = warp; qc < kBlockQ; qc += kWarps) {
          if (q0 + qc >= p.Nq) break;
          A part[DL];
#pragma unroll
          for (int t = 0; t < DL; ++t) part[t] = 0;
#pragma unroll 4
          for (int kr = 0; kr < kBlockK; ++kr) {
            const A ds = sS[kr * kBlockQ + qc];  // broadcast
#pragma unroll
            for (int t = 0; t < DL; ++t) part[t] += ds * sK[kr * D + lane + 32 * t];
          }
#pragma unroll
          for (int t = 0; t < DL; ++t) atomicAdd(dqh + (q0 + qc) * D + lane + 32 * t, part[t]);
        }
      }
    }
  }

  T* dk = static_cast<T*>(p.dk) + b * p.dk_batch_stride + hk * p.dk_head_stride;
  T* dv = static_cast<T*>(p.dv) + b * p.dv_batch_stride + hk * p.dv_head_stride;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = k0 + warp * R + r;
    if (j >= p.Nk) continue;
#pragma unroll
    for (int t = 0; t < DL; ++t) {
      store_acc(dk + j * p.dk_seq_stride + lane + 32 * t, dK[r][t]);
      store_acc(dv + j * p.dv_seq_stride + lane + 32 * t, dV[r][t]);
    }
  }
}

// Default mode, last step: dQ (storage type, strided) <- the accumulator [B, Hq, Nq, D].
template <typename T, int D>
__global__ void attention_bwd_dq_convert_kernel(const AttentionParams p,
                                                const typename Acc<T>::type* dq_accum) {
  const int64_t n = p.B * p.Hq * p.Nq * D;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e % D, i = (e / D) % p.Nq, h = (e / (D * p.Nq)) % p.Hq,
                  b = e / (D * p.Nq * p.Hq);
    store_acc(static_cast<T*>(p.dq) + b * p.dq_batch_stride + i * p.dq_seq_stride +
                  h * p.dq_head_stride + d,
              dq_accum[e]);
  }
}

// Deterministic mode: dQ of one query tile, summed over key tiles in order, no atomics.
template <typename T, int D, int kBlockQ, int kBlockK, int kWarps>
__global__ void __launch_bounds__(kWarps * 32)
    attention_bwd_dq_kernel(const AttentionParams p, const typename Acc<T>::type* Di) {
  using A = typename Acc<T>::type;
  constexpr int kThreads = kWarps * 32;
  constexpr int R = kBlockQ / kWarps;  // query rows per warp
  constexpr int C = kBlockK / 32;      // key columns per lane
  constexpr int DL = D / 32;
  constexpr int KS = D + 1;
  static_assert(kBlockQ % kWarps == 0 && kBlockK % 32 == 0 && D % 32 == 0, "tile shape");

  extern __shared__ __align__(16) unsigned char attention_smem[];
  A* sQ = reinterpret_cast<A*>(attention_smem);
  A* sdO = sQ + kBlockQ * D;
  A* sK = sdO + kBlockQ * D;
  A* sV = sK + kBlockK * KS;
  A* sS = sV + kBlockK * KS;  // [Bq][Bk], dS * scale

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t q0 = int64_t(blockIdx.x) * kBlockQ, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q1 = min64(q0 + kBlockQ, p.Nq);
  const A scale = A(p.softmax_scale);
  const bool dropout = p.dropout_p > 0.0;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const A keep_scale = A(1.0 / (1.0 - p.dropout_p));

  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const T* dO = static_cast<const T*>(p.do_) + b * p.do_batch_stride + h * p.do_head_stride;
  const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const A* lse = static_cast<const A*>(p.lse) + (b * p.Hq + h) * p.Nq;
  const A* Dh = Di + (b * p.Hq + h) * p.Nq;
  load_rows<T, A, D, kBlockQ, D, kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);
  load_rows<T, A, D, kBlockQ, D, kThreads>(sdO, dO, p.do_seq_stride, q0, p.Nq);

  A row_lse[R], row_di[R], dQ[R][DL];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = q0 + warp * R + r;
    row_lse[r] = i < p.Nq ? lse[i] : A(0);
    row_di[r] = i < p.Nq ? Dh[i] : A(0);
#pragma unroll
    for (int t = 0; t < DL; ++t) dQ[r][t] = 0;
  }

  const int64_t kend = causal_key_end(p, q1);
  for (int64_t k0 = 0; k0 < kend; k0 += kBlockK) {
    const int64_t k1 = min64(k0 + kBlockK, p.Nk);
    const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, k1);
    if (vis == TileVisibility::empty) continue;
    __syncthreads();
    load_rows<T, A, D, kBlockK, KS, kThreads>(sK, k, p.k_seq_stride, k0, p.Nk);
    load_rows<T, A, D, kBlockK, KS, kThreads>(sV, v, p.v_seq_stride, k0, p.Nk);
    __syncthreads();

    A s[R][C], dp[R][C];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < C; ++c) s[r][c] = dp[r][c] = 0;
#pragma unroll 2
    for (int d = 0; d < D; ++d) {
      A kv[C], vv[C];
#pragma unroll
      for (int c = 0; c < C; ++c) {
        kv[c] = sK[(lane + 32 * c) * KS + d];
        vv[c] = sV[(lane + 32 * c) * KS + d];
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const A qv = sQ[(warp * R + r) * D + d];  // broadcast
        const A dov = sdO[(warp * R + r) * D + d];
#pragma unroll
        for (int c = 0; c < C; ++c) {
          s[r][c] += qv * kv[c];
          dp[r][c] += dov * vv[c];
        }
      }
    }

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
            zs = attention_dropout_keep(p.seed, p.offset, uint32_t(b), uint32_t(h), uint32_t(p.Hq),
                                        uint32_t(i), uint32_t(j), threshold)
                     ? keep_scale
                     : A(0);
          ds = pv * (dp[r][c] * zs - row_di[r]) * scale;
        }
        sS[(warp * R + r) * kBlockK + lane + 32 * c] = ds;
      }
    }
    __syncwarp();

    // dQ += dS K
#pragma unroll 2
    for (int c = 0; c < kBlockK; ++c) {
      A kv[DL];
#pragma unroll
      for (int t = 0; t < DL; ++t) kv[t] = sK[c * KS + lane + 32 * t];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const A ds = sS[(warp * R + r) * kBlockK + c];  // broadcast
#pragma unroll
        for (int t = 0; t < DL; ++t) dQ[r][t] += ds * kv[t];
      }
    }
  }

  T* dq = static_cast<T*>(p.dq) + b * p.dq_batch_stride + h * p.dq_head_stride;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = q0 + warp * R + r;
    if (i >= p.Nq) continue;
#pragma unroll
    for (int t = 0; t < DL; ++t) store_acc(dq + i * p.dq_seq_stride + lane + 32 * t, dQ[r][t]);
  }
}

template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  using Cfg = Config<T, D>;
  using A = typename Acc<T>::type;
  check_grid(p, "flash_attention_backward_cuda");
  const int64_t rows = p.B * p.Hq * p.Nq;
  A* Di = static_cast<A*>(p.workspace);
  A* dq_accum = reinterpret_cast<A*>(static_cast<unsigned char*>(p.workspace) +
                                     workspace_pad(size_t(rows) * sizeof(A)));

  // 1. D_i = rowsum(dO * O), 8 rows (warps) per block.
  attention_bwd_dot_kernel<T, D><<<unsigned((rows + 7) / 8), 256, 0, stream>>>(p, Di);
  FG_LAUNCH_CHECK();

  // 2. dK, dV (and atomic dQ unless deterministic).
  const dim3 kv_grid(unsigned((p.Nk + Cfg::kBwdBlockK - 1) / Cfg::kBwdBlockK), unsigned(p.Hkv),
                     unsigned(p.B));
  const size_t kv_smem = bwd_dkdv_smem_bytes<A, D, Cfg::kBwdBlockK, Cfg::kBwdBlockQ>();
  if (!p.deterministic) {
    FG_CUDA_CHECK(cudaMemsetAsync(dq_accum, 0, size_t(rows) * D * sizeof(A), stream));
    auto kernel = attention_bwd_dkdv_kernel<T, D, Cfg::kBwdBlockK, Cfg::kBwdBlockQ, Cfg::kWarps, true>;
    set_smem_limit(kernel, kv_smem);
    kernel<<<kv_grid, Cfg::kWarps * 32, kv_smem, stream>>>(p, Di, dq_accum);
    FG_LAUNCH_CHECK();
    // 3a. accumulator -> dQ
    const int64_t n = rows * D;
    const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65535));
    attention_bwd_dq_convert_kernel<T, D><<<blocks, 256, 0, stream>>>(p, dq_accum);
    FG_LAUNCH_CHECK();
  } else {
    auto kernel = attention_bwd_dkdv_kernel<T, D, Cfg::kBwdBlockK, Cfg::kBwdBlockQ, Cfg::kWarps, false>;
    set_smem_limit(kernel, kv_smem);
    kernel<<<kv_grid, Cfg::kWarps * 32, kv_smem, stream>>>(p, Di, nullptr);
    FG_LAUNCH_CHECK();
    // 3b. dQ by query tiles, no atomics.
    auto dq_kernel = attention_bwd_dq_kernel<T, D, Cfg::kDqBlockQ, Cfg::kDqBlockK, Cfg::kWarps>;
    const size_t dq_smem = bwd_dq_smem_bytes<A, D, Cfg::kDqBlockQ, Cfg::kDqBlockK>();
    set_smem_limit(dq_kernel, dq_smem);
    const dim3 q_grid(unsigned((p.Nq + Cfg::kDqBlockQ - 1) / Cfg::kDqBlockQ), unsigned(p.Hq),
                      unsigned(p.B));
    dq_kernel<<<q_grid, Cfg::kWarps * 32, dq_smem, stream>>>(p, Di);
    FG_LAUNCH_CHECK();
  }
}

}  // namespace simt
}  // namespace attn
}  // namespace fg
