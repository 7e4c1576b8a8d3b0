// SIMT forward kernel and its launcher (see simt/common.cuh).
#pragma once
#include "kernels/attention/simt/common.cuh"

namespace fg {
namespace attn {
namespace simt {
// ---------------------------------------------------------------------------------------------
// Forward

template <typename T, int D, int kBlockQ, int kBlockK, int kWarps>
__global__ void __launch_bounds__(kWarps * 32)
    attention_forward_kernel(const AttentionParams p) {
  using A = typename Acc<T>::type;
  constexpr int kThreads = kWarps * 32;
  constexpr int R = kBlockQ / kWarps;  // query rows per warp
  constexpr int C = kBlockK / 32;      // key columns per lane
  constexpr int DL = D / 32;           // output dims per lane
  constexpr int KS = D + 1;            // padded: lanes read different K rows at the same d
  static_assert(kBlockQ % kWarps == 0 && kBlockK % 32 == 0 && D % 32 == 0, "tile shape");

  extern __shared__ __align__(16) unsigned char attention_smem[];
  A* sQ = reinterpret_cast<A*>(attention_smem);
  A* sK = sQ + kBlockQ * D;
  A* sV = sK + kBlockK * KS;
  A* sP = sV + kBlockK * D;

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t q0 = int64_t(blockIdx.x) * kBlockQ, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q1 = min64(q0 + kBlockQ, p.Nq);
  const A scale = A(p.softmax_scale);
  const bool dropout = p.dropout_p > 0.0;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const A keep_scale = A(1.0 / (1.0 - p.dropout_p));

  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
  const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;

  load_rows<T, A, D, kBlockQ, D, kThreads>(sQ, q, p.q_seq_stride, q0, p.Nq);

  A m[R], l[R], acc[R][DL];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = neg_inf<A>();
    l[r] = 0;
#pragma unroll
    for (int t = 0; t < DL; ++t) acc[r][t] = 0;
  }

  const int64_t kend = causal_key_end(p, q1);
  for (int64_t k0 = 0; k0 < kend; k0 += kBlockK) {
    const int64_t k1 = min64(k0 + kBlockK, p.Nk);
    // Uniform over the block, so the skip and the barriers below stay in step.
    const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, k1);
    if (vis == TileVisibility::empty) continue;
    __syncthreads();  // everyone is done with the previous K, V, P tiles
    load_rows<T, A, D, kBlockK, KS, kThreads>(sK, k, p.k_seq_stride, k0, p.Nk);
    load_rows<T, A, D, kBlockK, D, kThreads>(sV, v, p.v_seq_stride, k0, p.Nk);
    __syncthreads();

    // S = Q K^T for this warp's rows and this lane's columns.
    A s[R][C];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < C; ++c) s[r][c] = 0;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      A kv[C];
#pragma unroll
      for (int c = 0; c < C; ++c) kv[c] = sK[(lane + 32 * c) * KS + d];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const A qv = sQ[(warp * R + r) * D + d];  // broadcast
#pragma unroll
        for (int c = 0; c < C; ++c) s[r][c] += qv * kv[c];
      }
    }

    // Online softmax: mask, new row max, rescale, probabilities (dropped ones zeroed in sP).
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = q0 + warp * R + r;
      A tile_max = neg_inf<A>();
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t j = k0 + lane + 32 * c;
        s[r][c] = element_visible(p, vis, h, i, j) ? s[r][c] * scale : neg_inf<A>();
        tile_max = s[r][c] > tile_max ? s[r][c] : tile_max;
      }
      tile_max = warp_max(tile_max);
      const A m_new = m[r] > tile_max ? m[r] : tile_max;
      // While a row has seen no visible key, m_new is -inf; subtracting 0 instead keeps
      // exp(-inf - base) = 0 rather than NaN.
      const A base = m_new == neg_inf<A>() ? A(0) : m_new;
      const A alpha = exp_acc(m[r] - base);
      l[r] *= alpha;
#pragma unroll
      for (int t = 0; t < DL; ++t) acc[r][t] *= alpha;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        A pv = exp_acc(s[r][c] - base);
        l[r] += pv;  // per-lane partial sum of the undropped probabilities
        if (dropout && pv != A(0)) {
          const bool keep = attention_dropout_keep(p.seed, p.offset, uint32_t(b), uint32_t(h),
                                                   uint32_t(p.Hq), uint32_t(i),
                                                   uint32_t(k0 + lane + 32 * c), threshold);
          pv = keep ? pv * keep_scale : A(0);
        }
        sP[(warp * R + r) * kBlockK + lane + 32 * c] = pv;
      }
      m[r] = m_new;
    }
    __syncwarp();  // sP rows are private to the warp

    // O += P V: lane owns dims lane + 32 t.
#pragma unroll 2
    for (int c = 0; c < kBlockK; ++c) {
      A vv[DL];
#pragma unroll
      for (int t = 0; t < DL; ++t) vv[t] = sV[c * D + lane + 32 * t];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const A pv = sP[(warp * R + r) * kBlockK + c];  // broadcast
#pragma unroll
        for (int t = 0; t < DL; ++t) acc[r][t] += pv * vv[t];
      }
    }
  }

  // O = acc / l and LSE = m + log l; a row that saw no key gets O = 0 and LSE = -inf.
  T* o = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
  A* lse = static_cast<A*>(p.lse) + (b * p.Hq + h) * p.Nq;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = q0 + warp * R + r;
    const A lsum = warp_sum(l[r]);
    if (i >= p.Nq) continue;
    const A inv = lsum > A(0) ? A(1) / lsum : A(0);
#pragma unroll
    for (int t = 0; t < DL; ++t) store_acc(o + i * p.o_seq_stride + lane + 32 * t, acc[r][t] * inv);
    if (lane == 0) lse[i] = lsum > A(0) ? m[r] + log_acc(lsum) : neg_inf<A>();
  }
}
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  using Cfg = Config<T, D>;
  using A = typename Acc<T>::type;
  check_grid(p, "flash_attention_forward_cuda");
  auto kernel = attention_forward_kernel<T, D, Cfg::kFwdBlockQ, Cfg::kFwdBlockK, Cfg::kWarps>;
  const size_t smem = forward_smem_bytes<A, D, Cfg::kFwdBlockQ, Cfg::kFwdBlockK>();
  set_smem_limit(kernel, smem);
  const dim3 grid(unsigned((p.Nq + Cfg::kFwdBlockQ - 1) / Cfg::kFwdBlockQ), unsigned(p.Hq),
                  unsigned(p.B));
  kernel<<<grid, Cfg::kWarps * 32, smem, stream>>>(p);
  FG_LAUNCH_CHECK();
}

}  // namespace simt
}  // namespace attn
}  // namespace fg
