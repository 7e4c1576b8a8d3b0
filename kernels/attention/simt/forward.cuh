// SIMT forward (FlashAttention-2 partitioning) and its launcher simt::run_forward<T, D>.
//
// One block per (query tile, query head, batch). K and V tiles stream through shared memory;
// each warp keeps the running max m and the per-lane partial running sum l of its rows in
// registers, rescales its output accumulator whenever the max grows, and finally writes O and
// LSE. A key tile that the causal or block mask hides from the whole query tile is skipped
// before it is loaded; in a partial tile every element is tested with attention_allowed.
#pragma once
#include "kernels/attention/simt/common.cuh"

namespace fg {
namespace attn {
namespace simt {

template <typename T, int D>
__global__ void __launch_bounds__(Config<T, D>::kThreads) forward_kernel(const AttentionParams p) {
  using Cfg = Config<T, D>;
  using A = typename Cfg::A;
  constexpr int kTile = Cfg::kTile, R = Cfg::R, C = Cfg::C, DL = Cfg::DL, KS = Cfg::kPad;
  extern __shared__ __align__(16) unsigned char attention_smem[];
  A* sQ = reinterpret_cast<A*>(attention_smem);
  A* sK = sQ + kTile * D;
  A* sV = sK + kTile * KS;
  A* sP = sV + kTile * D;

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int64_t q0 = int64_t(blockIdx.x) * kTile, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q1 = min64(q0 + kTile, p.Nq);
  const Constants<A> sd = constants<A>(p.softmax_scale, p.dropout_p);
  load_rows<T, A, D, kTile, D, Cfg::kThreads>(sQ, p.q_head<const T>(b, h), p.q_seq_stride, q0,
                                              p.Nq);

  A m[R], l[R], acc[R][DL];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = neg_inf<A>();
    l[r] = 0;
#pragma unroll
    for (int t = 0; t < DL; ++t) acc[r][t] = 0;
  }

  auto visibility = [&](int64_t k0, int64_t k1) { return tile_visibility(p, h, q0, q1, k0, k1); };
  auto load = [&](int64_t k0) {
    load_rows<T, A, D, kTile, KS, Cfg::kThreads>(sK, p.k_head<const T>(b, hk), p.k_seq_stride, k0,
                                                 p.Nk);
    load_rows<T, A, D, kTile, D, Cfg::kThreads>(sV, p.v_head<const T>(b, hk), p.v_seq_stride, k0,
                                                p.Nk);
  };
  for_each_visible_tile<kTile>(0, key_end(p, q1), p.Nk, visibility, load,
                               [&](int64_t k0, int64_t, TileVisibility vis) {
    // S = Q K^T for this warp's rows and this lane's columns.
    A s[R][C];
    tile_products<R, C, D, KS>(s, sQ, sK, warp, lane);

    // Online softmax: mask, new row max, rescale, probabilities (dropped ones zeroed in sP).
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = q0 + warp * R + r;
      A tile_max = neg_inf<A>();
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const int64_t j = k0 + lane + 32 * c;
        s[r][c] = element_visible(p, vis, h, i, j) ? s[r][c] * sd.scale : neg_inf<A>();
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
        if (sd.dropout && pv != A(0))
          pv = sd.keep(p, b, h, i, k0 + lane + 32 * c) ? pv * sd.keep_scale : A(0);
        sP[(warp * R + r) * kTile + lane + 32 * c] = pv;
      }
      m[r] = m_new;
    }
    __syncwarp();  // sP rows are private to the warp

    accumulate_rows<R, DL, kTile, D>(acc, sP, sV, warp, lane);  // O += P V
  });

  // O = acc / l and LSE = m + log l; a row that saw no key gets O = 0 and LSE = -inf.
  T* o = p.o_head<T>(b, h);
  A* lse = p.lse_row<A>(b, h);
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
  check_grid(p, "flash_attention_forward_cuda");
  auto kernel = forward_kernel<T, D>;
  set_smem_limit(kernel, Cfg::kForwardSmem);
  const dim3 grid(unsigned((p.Nq + Cfg::kTile - 1) / Cfg::kTile), unsigned(p.Hq), unsigned(p.B));
  kernel<<<grid, Cfg::kThreads, Cfg::kForwardSmem, stream>>>(p);
  FG_LAUNCH_CHECK();
}

}  // namespace simt
}  // namespace attn
}  // namespace fg
