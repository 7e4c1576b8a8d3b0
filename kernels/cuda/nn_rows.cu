// CUDA kernels of the row ops: softmax and log-softmax, cross-entropy, LayerNorm. Same
// contracts and the same arithmetic as the CPU reference (kernels/cpu/nn.cpp); kernels first,
// launchers after, all on the default stream. One thread block per row with a block-wide
// reduction, or for LayerNorm on rows of whole 16-byte vectors, one warp per row.
//
// Out-of-range targets: the launcher gets a device int64 flag (zeroed by the caller); a kernel
// that meets a bad position p stores min(current, p + 1) into it with a compare-and-swap loop,
// so the flag ends as the first bad position + 1, as on the CPU.
#include <type_traits>

#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/cuda/nn_common.cuh"

namespace fg::cuda {

namespace {

// ---- softmax ----
template <typename T>
__global__ void softmax_kernel(int64_t cols, const T* __restrict__ in, T* __restrict__ out,
                               bool log_out) {
  using A = acc_t<T>;
  __shared__ A buf[32];
  const T* x = in + blockIdx.x * cols;
  T* y = out + blockIdx.x * cols;
  A m = neg_inf<A>();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = max(m, A(x[c]));
  m = block_max(m, buf);
  // All -inf: shift by 0 so the row gives softmax 0 / log-softmax -inf (as on the CPU).
  if (m == neg_inf<A>()) m = A(0);
  A s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += dexp(A(x[c]) - m);
  s = block_sum(s, buf);
  if (log_out) {
    A ls = s > A(0) ? dlog(s) : A(0);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) y[c] = T(A(x[c]) - m - ls);
  } else {
    A inv = s > A(0) ? A(1) / s : A(0);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) y[c] = T(dexp(A(x[c]) - m) * inv);
  }
}

template <typename T>
__global__ void softmax_backward_kernel(int64_t cols, const T* __restrict__ yp,
                                        const T* __restrict__ gyp, T* __restrict__ gxp,
                                        bool log_out) {
  using A = acc_t<T>;
  __shared__ A buf[32];
  const T* y = yp + blockIdx.x * cols;
  const T* gy = gyp + blockIdx.x * cols;
  T* gx = gxp + blockIdx.x * cols;
  A s = 0;
  if (log_out) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += A(gy[c]);
    s = block_sum(s, buf);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      gx[c] = T(A(gy[c]) - dexp(A(y[c])) * s);
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += A(gy[c]) * A(y[c]);
    s = block_sum(s, buf);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) gx[c] = T(A(y[c]) * (A(gy[c]) - s));
  }
}

// ---- cross-entropy ----
// Block-wide log-sum-exp of one row.
template <typename T, typename A>
__device__ A row_logsumexp(const T* x, int64_t cols, A* buf) {
  A m = neg_inf<A>();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = max(m, A(x[c]));
  m = block_max(m, buf);
  A s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += dexp(A(x[c]) - m);
  s = block_sum(s, buf);
  return m + dlog(s);
}

template <typename T, typename I>
__global__ void cross_entropy_kernel(int64_t cols, const T* __restrict__ logits,
                                     const I* __restrict__ targets, int64_t ignore_index,
                                     float* __restrict__ losses, int64_t* bad) {
  using A = acc_t<T>;
  __shared__ A buf[32];
  int64_t r = blockIdx.x;
  int64_t t = int64_t(targets[r]);
  if (t == ignore_index) {
    if (threadIdx.x == 0) losses[r] = 0.f;
    return;
  }
  if (t < 0 || t >= cols) {
    if (threadIdx.x == 0) {
      losses[r] = 0.f;
      report_bad(bad, r);
    }
    return;
  }
  const T* x = logits + r * cols;
  A lse = row_logsumexp<T, A>(x, cols, buf);
  if (threadIdx.x == 0) losses[r] = float(lse - A(x[t]));
}

template <typename T, typename I>
__global__ void cross_entropy_backward_kernel(int64_t cols, const T* __restrict__ logits,
                                              const I* __restrict__ targets, int64_t ignore_index,
                                              const float* __restrict__ grad_scale,
                                              T* __restrict__ glogits) {
  using A = acc_t<T>;
  __shared__ A buf[32];
  int64_t r = blockIdx.x;
  int64_t t = int64_t(targets[r]);
  T* g = glogits + r * cols;
  if (t == ignore_index || t < 0 || t >= cols) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) g[c] = T(A(0));
    return;
  }
  const T* x = logits + r * cols;
  A lse = row_logsumexp<T, A>(x, cols, buf);
  A scale = A(grad_scale[0]);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A p = dexp(A(x[c]) - lse);
    g[c] = T((p - (c == t ? A(1) : A(0))) * scale);
  }
}

// ---- LayerNorm ----
template <typename T>
__global__ void layer_norm_kernel(int64_t cols, const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ b, double eps, T* __restrict__ y,
                                  float* __restrict__ mean, float* __restrict__ rstd) {
  using A = acc_t<T>;
  __shared__ A buf[32];
  const T* xr = x + blockIdx.x * cols;
  T* yr = y + blockIdx.x * cols;
  A s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += A(xr[c]);
  A mu = block_sum(s, buf) / A(cols);
  A v = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A d = A(xr[c]) - mu;
    v += d * d;
  }
  v = block_sum(v, buf) / A(cols);
  A rs = A(1) / dsqrt(v + A(eps));
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A o = (A(xr[c]) - mu) * rs;
    if (w) o *= A(w[c]);
    if (b) o += A(b[c]);
    yr[c] = T(o);
  }
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = float(mu);
    rstd[blockIdx.x] = float(rs);
  }
}

template <typename T>
__global__ void layer_norm_backward_gx_kernel(int64_t cols, const T* __restrict__ gy,
                                              const T* __restrict__ x, const T* __restrict__ w,
                                              const float* __restrict__ mean,
                                              const float* __restrict__ rstd,
                                              T* __restrict__ gx) {
  using A = acc_t<T>;
  __shared__ A buf[32];
  int64_t r = blockIdx.x;
  const T* xr = x + r * cols;
  const T* gr = gy + r * cols;
  T* gxr = gx + r * cols;
  A mu = A(mean[r]), rs = A(rstd[r]);
  A s1 = 0, s2 = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A dxh = A(gr[c]) * (w ? A(w[c]) : A(1));
    A xh = (A(xr[c]) - mu) * rs;
    s1 += dxh;
    s2 += dxh * xh;
  }
  s1 = block_sum(s1, buf) / A(cols);
  s2 = block_sum(s2, buf) / A(cols);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    A dxh = A(gr[c]) * (w ? A(w[c]) : A(1));
    A xh = (A(xr[c]) - mu) * rs;
    gxr[c] = T(rs * (dxh - s1 - xh * s2));
  }
}

// The same two kernels with a warp per row, for rows of a multiple of V elements (16 bytes):
// each lane reads V elements per access, the row's sums meet by shuffles (no shared memory, no
// block barrier), and the second and third reads of the row hit L1. A GPT's rows (768 to 4096
// wide) are a few hundred vectors: a block of 8 warps takes 8 rows. The forward here serves
// rows past 8 vectors a lane; shorter ones (bf16 up to 2048 wide) hold the row in registers
// (layer_norm_regs_kernel: 15% less time than this loop at [16384, 768] on an H100).
constexpr int kLnWarps = 8;
template <typename T>
constexpr int ln_vec() { return int(16 / sizeof(T)); }

template <typename T>
using LnVec = Vec<T, ln_vec<T>()>;  // 16 bytes, aligned (elementwise_launch.cuh)

// One output vector of the forward: (x - mu) rs, times w and plus b where given (wv, bv may be
// null), vector k of the row.
template <typename T, typename A>
__device__ __forceinline__ LnVec<T> ln_output(const LnVec<T>& a, const LnVec<T>* wv,
                                              const LnVec<T>* bv, int64_t k, A mu, A rs) {
  const LnVec<T> wk = wv ? wv[k] : LnVec<T>{}, bk = bv ? bv[k] : LnVec<T>{};
  LnVec<T> o;
#pragma unroll
  for (int j = 0; j < ln_vec<T>(); ++j) {
    A t = (A(a.v[j]) - mu) * rs;
    if (wv) t *= A(wk.v[j]);
    if (bv) t += A(bk.v[j]);
    o.v[j] = T(t);
  }
  return o;
}

template <typename T>
__global__ void __launch_bounds__(32 * kLnWarps)
    layer_norm_warp_kernel(int64_t rows, int64_t cols, const T* __restrict__ x,
                           const T* __restrict__ w, const T* __restrict__ b, double eps,
                           T* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd) {
  using A = acc_t<T>;
  constexpr int V = ln_vec<T>();
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kLnWarps + (threadIdx.x >> 5);
  if (r >= rows) return;  // the whole warp leaves together
  const LnVec<T>* xr = reinterpret_cast<const LnVec<T>*>(x + r * cols);
  // w and b are read as whole vectors too (ln_warp_rows checked them); either may be null.
  const LnVec<T>* wv = reinterpret_cast<const LnVec<T>*>(w);
  const LnVec<T>* bv = reinterpret_cast<const LnVec<T>*>(b);
  const int64_t nv = cols / V;
  A s = 0;
  for (int64_t k = lane; k < nv; k += 32) {
    const LnVec<T> a = xr[k];
#pragma unroll
    for (int j = 0; j < V; ++j) s += A(a.v[j]);
  }
  const A mu = warp_sum(s) / A(cols);
  A var = 0;
  for (int64_t k = lane; k < nv; k += 32) {
    const LnVec<T> a = xr[k];
#pragma unroll
    for (int j = 0; j < V; ++j) var += (A(a.v[j]) - mu) * (A(a.v[j]) - mu);
  }
  const A rs = A(1) / dsqrt(warp_sum(var) / A(cols) + A(eps));
  LnVec<T>* yr = reinterpret_cast<LnVec<T>*>(y + r * cols);
  for (int64_t k = lane; k < nv; k += 32) yr[k] = ln_output<T>(xr[k], wv, bv, k, mu, rs);
  if (lane == 0) {
    mean[r] = float(mu);
    rstd[r] = float(rs);
  }
}

// The forward for rows of at most 32 NV vectors: the lane's NV vectors are loaded once, all
// before the first use (NV loads in flight a lane), and both sums and the output come from
// registers (w and b, read by every row, come from L1 as the output is written). Same
// arithmetic as above. (Two rows a warp, all their loads first, measured 24% slower at
// [16384, 768] on an H200: 83 registers, three blocks an SM instead of five.)
template <typename T, int NV>
__global__ void __launch_bounds__(32 * kLnWarps, NV <= 3 ? 5 : 1)
    layer_norm_regs_kernel(int64_t rows, int64_t cols, const T* __restrict__ x,
                           const T* __restrict__ w, const T* __restrict__ b, double eps,
                           T* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd) {
  using A = acc_t<T>;
  constexpr int V = ln_vec<T>();
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kLnWarps + (threadIdx.x >> 5);
  if (r >= rows) return;  // the whole warp leaves together
  const LnVec<T>* xr = reinterpret_cast<const LnVec<T>*>(x + r * cols);
  const LnVec<T>* wv = reinterpret_cast<const LnVec<T>*>(w);  // either may be null
  const LnVec<T>* bv = reinterpret_cast<const LnVec<T>*>(b);
  const int nv = int(cols / V);
  LnVec<T> a[NV];
#pragma unroll
  for (int i = 0; i < NV; ++i)
    if (lane + 32 * i < nv) a[i] = xr[lane + 32 * i];
  A s = 0;
#pragma unroll
  for (int i = 0; i < NV; ++i)
    if (lane + 32 * i < nv) {
#pragma unroll
      for (int j = 0; j < V; ++j) s += A(a[i].v[j]);
    }
  const A mu = warp_sum(s) / A(cols);
  A var = 0;
#pragma unroll
  for (int i = 0; i < NV; ++i)
    if (lane + 32 * i < nv) {
#pragma unroll
      for (int j = 0; j < V; ++j) var += (A(a[i].v[j]) - mu) * (A(a[i].v[j]) - mu);
    }
  const A rs = A(1) / dsqrt(warp_sum(var) / A(cols) + A(eps));
  LnVec<T>* yr = reinterpret_cast<LnVec<T>*>(y + r * cols);
#pragma unroll
  for (int i = 0; i < NV; ++i)
    if (lane + 32 * i < nv) yr[lane + 32 * i] = ln_output<T>(a[i], wv, bv, lane + 32 * i, mu, rs);
  if (lane == 0) {
    mean[r] = float(mu);
    rstd[r] = float(rs);
  }
}

template <typename T>
__global__ void __launch_bounds__(32 * kLnWarps)
    layer_norm_backward_gx_warp_kernel(int64_t rows, int64_t cols, const T* __restrict__ gy,
                                       const T* __restrict__ x, const T* __restrict__ w,
                                       const float* __restrict__ mean,
                                       const float* __restrict__ rstd, T* __restrict__ gx) {
  using A = acc_t<T>;
  constexpr int V = ln_vec<T>();
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kLnWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const LnVec<T>* xr = reinterpret_cast<const LnVec<T>*>(x + r * cols);
  const LnVec<T>* gr = reinterpret_cast<const LnVec<T>*>(gy + r * cols);
  const LnVec<T>* wv = reinterpret_cast<const LnVec<T>*>(w);  // may be null
  const int64_t nv = cols / V;
  const A mu = A(mean[r]), rs = A(rstd[r]);
  A s1 = 0, s2 = 0;
  for (int64_t k = lane; k < nv; k += 32) {
    const LnVec<T> a = xr[k], g = gr[k], wk = w ? wv[k] : LnVec<T>{};
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const A dxh = A(g.v[j]) * (w ? A(wk.v[j]) : A(1));
      s1 += dxh;
      s2 += dxh * ((A(a.v[j]) - mu) * rs);
    }
  }
  s1 = warp_sum(s1) / A(cols);
  s2 = warp_sum(s2) / A(cols);
  LnVec<T>* out = reinterpret_cast<LnVec<T>*>(gx + r * cols);
  for (int64_t k = lane; k < nv; k += 32) {
    const LnVec<T> a = xr[k], g = gr[k], wk = w ? wv[k] : LnVec<T>{};
    LnVec<T> o;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const A dxh = A(g.v[j]) * (w ? A(wk.v[j]) : A(1));
      const A xh = (A(a.v[j]) - mu) * rs;
      o.v[j] = T(rs * (dxh - s1 - xh * s2));
    }
    out[k] = o;
  }
}

// Whether the warp-per-row kernels take these rows: whole 16-byte vectors, every pointer they
// read or write as vectors (the rows, and w and b) aligned to 16 bytes; null w or b passes.
template <typename T>
bool ln_warp_rows(int64_t cols, std::initializer_list<const void*> ptrs) {
  if (cols % ln_vec<T>() != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// gw and gb are column sums over rows. Stage 1: block (32, 8) sums a 32-column tile over one
// chunk of rows (8 rows in flight, reduced through shared memory in a fixed order) into
// partial[chunk][col]. Stage 2 sums the chunks in order. No atomics: deterministic.
constexpr int kLnCols = 32, kLnRowsInFlight = 8;
// The column sums of a (kLnCols, ROWS) block: row ty holds (aw, ab) for column threadIdx.x;
// the rows meet in shared memory in order, and row 0 ends with the totals (true there). Every
// thread of the block must call it.
template <int ROWS, typename A>
__device__ bool tile_column_sums(A& aw, A& ab) {
  __shared__ A sw[ROWS][kLnCols + 1];
  __shared__ A sb[ROWS][kLnCols + 1];
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y != 0) return false;
  for (int k = 1; k < ROWS; ++k) {
    aw += sw[k][threadIdx.x];
    ab += sb[k][threadIdx.x];
  }
  return true;
}

template <typename T>
__global__ void layer_norm_backward_wb_partial_kernel(int64_t rows, int64_t cols,
                                                      int64_t rows_per_chunk,
                                                      const T* __restrict__ gy,
                                                      const T* __restrict__ x,
                                                      const float* __restrict__ mean,
                                                      const float* __restrict__ rstd,
                                                      acc_t<T>* __restrict__ part_w,
                                                      acc_t<T>* __restrict__ part_b) {
  using A = acc_t<T>;
  int64_t c = int64_t(blockIdx.x) * kLnCols + threadIdx.x;
  int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  int64_t r1 = min(rows, r0 + rows_per_chunk);
  A aw = 0, ab = 0;
  if (c < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kLnRowsInFlight) {
      A g = A(gy[r * cols + c]);
      aw += g * (A(x[r * cols + c]) - A(mean[r])) * A(rstd[r]);
      ab += g;
    }
  }
  if (tile_column_sums<kLnRowsInFlight>(aw, ab) && c < cols) {
    part_w[int64_t(blockIdx.y) * cols + c] = aw;
    part_b[int64_t(blockIdx.y) * cols + c] = ab;
  }
}

// gx as layer_norm_backward_gx_warp_kernel does it and, in the same pass over gy and x, the
// block's share of gw = sum_r gy xhat and gb = sum_r gy. A warp takes rows r = blockIdx.x *
// kLnWarps + warp, strided by the grid, with every load of a row issued before its first use.
// Each lane adds its NV vectors' columns into the warp's own
// region of shared memory (gw sums, then gb sums; element j of vector k at j * 32 NV + k, so
// the lanes touch consecutive words: no bank conflicts): registers stay free for more warps an
// SM than sums held in registers would leave. At the end the block's warps meet column by
// column in warp order (deterministic) and the block writes part_w/part_b[blockIdx.x]. For
// rows of at most 32 NV vectors; dynamic shared memory: ln_fused_smem. (Measured on an H100 at
// [16384, 768]: sums in registers, 126 of them a thread, ran 14% slower; loads interleaved with
// their use, 23%. Issuing the next row's loads before working on the current one ran 7%
// slower on an H200: 122 registers, two blocks an SM instead of three.)
template <typename T, int NV>
__global__ void __launch_bounds__(32 * kLnWarps)
    layer_norm_backward_fused_kernel(int64_t rows, int64_t cols, const T* __restrict__ gy,
                                     const T* __restrict__ x, const T* __restrict__ w,
                                     const float* __restrict__ mean,
                                     const float* __restrict__ rstd, T* __restrict__ gx,
                                     acc_t<T>* __restrict__ part_w, acc_t<T>* __restrict__ part_b) {
  using A = acc_t<T>;
  constexpr int V = ln_vec<T>();
  constexpr int kRegion = 32 * NV * V;  // one warp's gw (then gb) sums
  extern __shared__ __align__(16) unsigned char ln_smem[];
  A* const sums = reinterpret_cast<A*>(ln_smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t nv = cols / V;
  const LnVec<T>* wv = reinterpret_cast<const LnVec<T>*>(w);  // may be null
  A* const acc = sums + 2 * kRegion * warp;
#pragma unroll
  for (int i = 0; i < NV; ++i)
#pragma unroll
    for (int j = 0; j < V; ++j) {
      acc[j * 32 * NV + lane + 32 * i] = A(0);
      acc[kRegion + j * 32 * NV + lane + 32 * i] = A(0);
    }
  for (int64_t r = int64_t(blockIdx.x) * kLnWarps + warp; r < rows;
       r += int64_t(gridDim.x) * kLnWarps) {
    const LnVec<T>* xr = reinterpret_cast<const LnVec<T>*>(x + r * cols);
    const LnVec<T>* gr = reinterpret_cast<const LnVec<T>*>(gy + r * cols);
    const A mu = A(mean[r]), rs = A(rstd[r]);
    LnVec<T> a[NV], g[NV];
#pragma unroll
    for (int i = 0; i < NV; ++i)
      if (lane + 32 * i < nv) {
        a[i] = xr[lane + 32 * i];
        g[i] = gr[lane + 32 * i];
      }
    A s1 = 0, s2 = 0;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int64_t k = lane + 32 * i;
      if (k >= nv) continue;
      const LnVec<T> wk = w ? wv[k] : LnVec<T>{};  // read again below, not kept: registers
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A gv = A(g[i].v[j]), xh = (A(a[i].v[j]) - mu) * rs;
        const A dxh = gv * (w ? A(wk.v[j]) : A(1));
        s1 += dxh;
        s2 += dxh * xh;
        acc[j * 32 * NV + k] += gv * xh;
        acc[kRegion + j * 32 * NV + k] += gv;
      }
    }
    s1 = warp_sum(s1) / A(cols);
    s2 = warp_sum(s2) / A(cols);
    LnVec<T>* out = reinterpret_cast<LnVec<T>*>(gx + r * cols);
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const int64_t k = lane + 32 * i;
      if (k >= nv) continue;
      const LnVec<T> wk = w ? wv[k] : LnVec<T>{};
      LnVec<T> o;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const A dxh = A(g[i].v[j]) * (w ? A(wk.v[j]) : A(1));
        const A xh = (A(a[i].v[j]) - mu) * rs;
        o.v[j] = T(rs * (dxh - s1 - xh * s2));
      }
      out[k] = o;
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const int64_t e = (c % V) * 32 * NV + c / V;
    A tw = 0, tb = 0;
    for (int wp = 0; wp < kLnWarps; ++wp) {
      tw += sums[2 * kRegion * wp + e];
      tb += sums[2 * kRegion * wp + kRegion + e];
    }
    part_w[int64_t(blockIdx.x) * cols + c] = tw;
    part_b[int64_t(blockIdx.x) * cols + c] = tb;
  }
}

// gw, gb = the sums of the chunks' partials, in chunk order: block (32, kLnFinalRows) takes 32
// columns, row ty of the block sums chunks ty, ty + kLnFinalRows, ..., and the rows meet in
// shared memory in order. 32 rows: a few hundred chunks are a handful of loads a thread.
constexpr int kLnFinalRows = 32;
template <typename T>
__global__ void layer_norm_backward_wb_final_kernel(int64_t cols, int64_t chunks,
                                                    const acc_t<T>* __restrict__ part_w,
                                                    const acc_t<T>* __restrict__ part_b,
                                                    T* __restrict__ gw, T* __restrict__ gb) {
  using A = acc_t<T>;
  const int64_t c = int64_t(blockIdx.x) * kLnCols + threadIdx.x;
  A aw = 0, ab = 0;
  if (c < cols) {
#pragma unroll 4
    for (int64_t k = threadIdx.y; k < chunks; k += kLnFinalRows) {
      aw += part_w[k * cols + c];
      ab += part_b[k * cols + c];
    }
  }
  if (tile_column_sums<kLnFinalRows>(aw, ab) && c < cols) {
    if (gw) gw[c] = T(aw);
    if (gb) gb[c] = T(ab);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers

void softmax(DType dtype, int64_t rows, int64_t cols, const void* in, void* out, bool log) {
  if (rows == 0 || cols == 0) return;
  check_rows(rows, "softmax");
  FG_DISPATCH_FLOAT(dtype, "softmax", [&] {
    softmax_kernel<scalar_t><<<unsigned(rows), row_threads(cols)>>>(
        cols, static_cast<const scalar_t*>(in), static_cast<scalar_t*>(out), log);
    FG_LAUNCH_CHECK();
  });
}

void softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y, const void* gy,
                      void* gx, bool log) {
  if (rows == 0 || cols == 0) return;
  check_rows(rows, "softmax_backward");
  FG_DISPATCH_FLOAT(dtype, "softmax_backward", [&] {
    softmax_backward_kernel<scalar_t><<<unsigned(rows), row_threads(cols)>>>(
        cols, static_cast<const scalar_t*>(y), static_cast<const scalar_t*>(gy),
        static_cast<scalar_t*>(gx), log);
    FG_LAUNCH_CHECK();
  });
}

void cross_entropy(DType dtype, DType target_dtype, int64_t rows, int64_t cols,
                   const void* logits, const void* targets, int64_t ignore_index, float* losses,
                   int64_t* bad_target) {
  if (rows == 0) return;
  check_rows(rows, "cross_entropy");
  FG_DISPATCH_FLOAT(dtype, "cross_entropy", [&] {
    using T = scalar_t;
    FG_DISPATCH_INDEX(target_dtype, "cross_entropy", [&] {
      cross_entropy_kernel<T, index_t><<<unsigned(rows), row_threads(cols)>>>(
          cols, static_cast<const T*>(logits), static_cast<const index_t*>(targets),
          ignore_index, losses, bad_target);
      FG_LAUNCH_CHECK();
    });
  });
}

void cross_entropy_backward(DType dtype, DType target_dtype, int64_t rows, int64_t cols,
                            const void* logits, const void* targets, int64_t ignore_index,
                            const float* grad_scale, void* glogits) {
  if (rows == 0 || cols == 0) return;
  check_rows(rows, "cross_entropy_backward");
  FG_DISPATCH_FLOAT(dtype, "cross_entropy_backward", [&] {
    using T = scalar_t;
    FG_DISPATCH_INDEX(target_dtype, "cross_entropy_backward", [&] {
      cross_entropy_backward_kernel<T, index_t><<<unsigned(rows), row_threads(cols)>>>(
          cols, static_cast<const T*>(logits), static_cast<const index_t*>(targets),
          ignore_index, grad_scale, static_cast<T*>(glogits));
      FG_LAUNCH_CHECK();
    });
  });
}

void layer_norm(DType dtype, int64_t rows, int64_t cols, const void* x, const void* w,
                const void* b, double eps, void* y, float* mean, float* rstd) {
  if (rows == 0 || cols == 0) return;
  check_rows(rows, "layer_norm");
  FG_DISPATCH_FLOAT(dtype, "layer_norm", [&] {
    using T = scalar_t;
    const unsigned blocks = unsigned((rows + kLnWarps - 1) / kLnWarps);
    const int64_t nv = (cols / ln_vec<T>() + 31) / 32;  // vectors a lane
    if (ln_warp_rows<T>(cols, {x, y, w, b}) && nv <= 8) {
      auto launch = [&](auto kernel) {
        kernel<<<blocks, 32 * kLnWarps>>>(rows, cols, static_cast<const T*>(x),
                                          static_cast<const T*>(w), static_cast<const T*>(b),
                                          eps, static_cast<T*>(y), mean, rstd);
      };
      switch (nv) {
        case 1: launch(layer_norm_regs_kernel<T, 1>); break;
        case 2: launch(layer_norm_regs_kernel<T, 2>); break;
        case 3: launch(layer_norm_regs_kernel<T, 3>); break;
        case 4: launch(layer_norm_regs_kernel<T, 4>); break;
        case 5:
        case 6: launch(layer_norm_regs_kernel<T, 6>); break;
        default: launch(layer_norm_regs_kernel<T, 8>); break;
      }
    } else if (ln_warp_rows<T>(cols, {x, y, w, b})) {
      layer_norm_warp_kernel<T><<<blocks, 32 * kLnWarps>>>(
          rows, cols, static_cast<const T*>(x), static_cast<const T*>(w),
          static_cast<const T*>(b), eps, static_cast<T*>(y), mean, rstd);
    } else {
      layer_norm_kernel<T><<<unsigned(rows), row_threads(cols)>>>(
          cols, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), eps,
          static_cast<T*>(y), mean, rstd);
    }
    FG_LAUNCH_CHECK();
  });
}

namespace {
// The weight/bias gradient runs in two passes: partial sums over chunks of rows, then one sum
// over the chunks. Enough chunks to fill the GPU, each long enough to amortise its partial row.
struct LnChunks {
  int64_t col_tiles, chunks, rows_per_chunk;
};
LnChunks layer_norm_chunks(int64_t rows, int64_t cols) {
  LnChunks c;
  c.col_tiles = (cols + kLnCols - 1) / kLnCols;
  c.chunks = std::max<int64_t>(
      1, std::min<int64_t>((rows + 63) / 64, std::max<int64_t>(1, 1024 / c.col_tiles)));
  c.rows_per_chunk = std::max<int64_t>(1, (rows + c.chunks - 1) / c.chunks);
  c.chunks = std::max<int64_t>(1, (rows + c.rows_per_chunk - 1) / c.rows_per_chunk);
  return c;
}

// Vectors per lane of the fused backward (0: the row is too long for it).
template <typename T>
int ln_fused_nv(int64_t cols) {
  const int64_t nv = (cols / ln_vec<T>() + 31) / 32;
  return nv <= 4 ? int(nv) : 0;
}

// The fused kernel's dynamic shared memory with NV vectors per lane (two regions of sums a
// warp), and how many of its blocks fit on one SM, asked once.
template <typename T, int NV>
size_t ln_fused_smem() {
  return 2 * size_t(32 * NV * ln_vec<T>()) * sizeof(acc_t<T>) * kLnWarps;
}

template <typename T, int NV>
int ln_fused_blocks_per_sm() {
  static const int n = [] {
    int blocks = 0;
    const size_t smem = ln_fused_smem<T, NV>();
    FG_CUDA_CHECK(cudaFuncSetAttribute(layer_norm_backward_fused_kernel<T, NV>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    FG_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks, layer_norm_backward_fused_kernel<T, NV>, 32 * kLnWarps, smem));
    return std::max(1, blocks);
  }();
  return n;
}

// The fused backward's grid: one full wave of the GPU, fewer blocks for few rows.
template <typename T>
int64_t ln_fused_blocks(int64_t rows, int nv) {
  const int per_sm = nv == 1   ? ln_fused_blocks_per_sm<T, 1>()
                     : nv == 2 ? ln_fused_blocks_per_sm<T, 2>()
                     : nv == 3 ? ln_fused_blocks_per_sm<T, 3>()
                               : ln_fused_blocks_per_sm<T, 4>();
  const int64_t sms = std::max(1, cuda_current_device_info().sm_count);
  return std::max<int64_t>(1, std::min<int64_t>(per_sm * sms, (rows + kLnWarps - 1) / kLnWarps));
}
}  // namespace

size_t layer_norm_backward_workspace(DType dtype, int64_t rows, int64_t cols) {
  if (cols == 0) return 0;
  const size_t acc = dtype == DType::f64 ? sizeof(double) : sizeof(float);
  // gw and gb partials: per chunk of rows (the column-tile kernel) or per block (the fused one).
  int64_t parts = layer_norm_chunks(rows, cols).chunks;
  FG_DISPATCH_FLOAT(dtype, "layer_norm_backward", [&] {
    const int nv = ln_fused_nv<scalar_t>(cols);
    if (nv > 0) parts = std::max(parts, ln_fused_blocks<scalar_t>(rows, nv));
  });
  return 2 * size_t(parts * cols) * acc;
}

void layer_norm_backward(DType dtype, int64_t rows, int64_t cols, const void* gy, const void* x,
                         const void* w, const float* mean, const float* rstd, void* gx, void* gw,
                         void* gb, void* workspace) {
  if (cols == 0) return;
  check_rows(rows, "layer_norm_backward");
  FG_DISPATCH_FLOAT(dtype, "layer_norm_backward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    A* part_w = static_cast<A*>(workspace);
    const bool warp_rows = rows > 0 && ln_warp_rows<T>(cols, {gy, x, gx, w});
    const int nv = ln_fused_nv<T>(cols);
    if (warp_rows && (gw || gb) && nv > 0) {
      // One pass: gx and the per-block partial sums of gw, gb; then their sum.
      const int64_t blocks = ln_fused_blocks<T>(rows, nv);
      A* part_b = part_w + blocks * cols;
      auto launch = [&](auto nv_c) {
        constexpr int NV = decltype(nv_c)::value;
        const auto kernel = layer_norm_backward_fused_kernel<T, NV>;
        const size_t smem = ln_fused_smem<T, NV>();
        // The opt-in above 48 KiB holds for one device: set it on the current one every time.
        if (smem > 48 * 1024)
          FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(smem)));
        kernel<<<unsigned(blocks), 32 * kLnWarps, smem>>>(
            rows, cols, static_cast<const T*>(gy), static_cast<const T*>(x),
            static_cast<const T*>(w), mean, rstd, static_cast<T*>(gx), part_w, part_b);
      };
      switch (nv) {
        case 1: launch(std::integral_constant<int, 1>{}); break;
        case 2: launch(std::integral_constant<int, 2>{}); break;
        case 3: launch(std::integral_constant<int, 3>{}); break;
        default: launch(std::integral_constant<int, 4>{}); break;
      }
      FG_LAUNCH_CHECK();
      layer_norm_backward_wb_final_kernel<T>
          <<<unsigned((cols + kLnCols - 1) / kLnCols), dim3(kLnCols, kLnFinalRows)>>>(
              cols, blocks, part_w, part_b, static_cast<T*>(gw), static_cast<T*>(gb));
      FG_LAUNCH_CHECK();
      return;
    }
    if (warp_rows) {
      layer_norm_backward_gx_warp_kernel<T>
          <<<unsigned((rows + kLnWarps - 1) / kLnWarps), 32 * kLnWarps>>>(
              rows, cols, static_cast<const T*>(gy), static_cast<const T*>(x),
              static_cast<const T*>(w), mean, rstd, static_cast<T*>(gx));
      FG_LAUNCH_CHECK();
    } else if (rows > 0) {
      layer_norm_backward_gx_kernel<T><<<unsigned(rows), row_threads(cols)>>>(
          cols, static_cast<const T*>(gy), static_cast<const T*>(x), static_cast<const T*>(w),
          mean, rstd, static_cast<T*>(gx));
      FG_LAUNCH_CHECK();
    }
    if (!gw && !gb) return;
    const LnChunks c = layer_norm_chunks(rows, cols);
    A* part_b = part_w + c.chunks * cols;
    dim3 grid{static_cast<unsigned>(c.col_tiles), static_cast<unsigned>(c.chunks)};
    dim3 block{unsigned(kLnCols), unsigned(kLnRowsInFlight)};
    layer_norm_backward_wb_partial_kernel<T><<<grid, block>>>(
        rows, cols, c.rows_per_chunk, static_cast<const T*>(gy), static_cast<const T*>(x), mean,
        rstd, part_w, part_b);
    FG_LAUNCH_CHECK();
    layer_norm_backward_wb_final_kernel<T>
        <<<unsigned((cols + kLnCols - 1) / kLnCols), dim3(kLnCols, kLnFinalRows)>>>(
            cols, c.chunks, part_w, part_b, static_cast<T*>(gw), static_cast<T*>(gb));
    FG_LAUNCH_CHECK();
  });
}

}  // namespace fg::cuda
