// CUDA kernels of the indexing ops: embedding, dropout, gather / scatter-add. Same contracts
// and the same arithmetic as the CPU reference (kernels/cpu/nn.cpp); kernels first, launchers
// after, all on the default stream, grid-stride loops.
//
// Out-of-range indices: reported through a device int64 flag as in nn_rows.cu (the first bad
// position + 1).
//
// Accumulation with atomics (embedding_backward, scatter_add): f32 and f64 use atomicAdd on
// the output directly (the order of additions, hence the last bits, varies run to run).
// bf16 and f16 accumulate into an fp32 scratch buffer with atomicAdd and are rounded once
// when the scratch is added to the output: more accurate than 16-bit CAS loops, and the
// same rounding as the CPU path.
#include "core/philox.h"
#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/cuda/nn_common.cuh"

namespace fg::cuda {

namespace {

// ---- embedding ----
template <typename T, typename I>
__global__ void embedding_kernel(int64_t rows, int64_t dim, int64_t vocab,
                                 const T* __restrict__ weight, const I* __restrict__ idx,
                                 T* __restrict__ out, int64_t* bad) {
  int64_t total = rows * dim;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = e / dim, c = e % dim;
    int64_t i = int64_t(idx[r]);
    if (i < 0 || i >= vocab) {
      if (c == 0) report_bad(bad, r);
      out[e] = T(0.f);
      continue;
    }
    out[e] = weight[i * dim + c];
  }
}

// dst += gout rows with atomics; D is T for f32 / f64 and float (the scratch) for 16-bit.
template <typename T, typename D, typename I>
__global__ void embedding_backward_kernel(int64_t rows, int64_t dim, int64_t vocab,
                                          const T* __restrict__ gout, const I* __restrict__ idx,
                                          D* dst) {
  int64_t total = rows * dim;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = e / dim, c = e % dim;
    int64_t i = int64_t(idx[r]);
    if (i < 0 || i >= vocab) continue;  // rejected by the forward
    atomicAdd(dst + i * dim + c, D(acc_t<T>(gout[e])));
  }
}
// out[i] = T(float(out[i]) + scratch[i]): folds an fp32 scratch into a 16-bit output.
template <typename T>
__global__ void add_scratch_kernel(int64_t n, const float* __restrict__ scratch, T* out) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x)
    out[e] = T(float(out[e]) + scratch[e]);
}

// ---- dropout ----
// x * scale rounded on its own (no contraction into an FMA with the residual's add), as the
// CPU computes it: the two devices stay bitwise equal.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

template <typename T>
__device__ __forceinline__ T dropout_one(T x, const T* res, uint32_t bits, uint32_t threshold,
                                         acc_t<T> scale) {
  using A = acc_t<T>;
  const A d = bits >= threshold ? mul_rn(A(x), scale) : A(0);
  return res ? T(A(*res) + d) : T(d);
}

// Elements 8q .. 8q + 7 share one Philox call (dropout_block(q), 16 bits each): a thread takes
// such a group, so each call is made once, and moves it with one 16-byte load and store per
// operand in 16-bit types (two in f32, four in f64) when VEC (aligned pointers, n a multiple
// of 8).
template <typename T, bool VEC>
__global__ void dropout_kernel(int64_t n, const T* __restrict__ x, const T* __restrict__ res,
                               T* __restrict__ y, uint32_t threshold, acc_t<T> scale,
                               uint64_t seed, uint64_t offset) {
  uint32_t k0, k1;
  philox_key(seed, offset, k0, k1);
  const int64_t groups = (n + 7) / 8;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < groups;
       q += int64_t(gridDim.x) * blockDim.x) {
    const Philox4 r = philox4x32_10(uint32_t(q), uint32_t(uint64_t(q) >> 32), kPhiloxStreamDropout,
                                    uint32_t(offset), k0, k1);
    if constexpr (VEC) {
      using V8 = Vec<T, 8>;
      const V8 xv = reinterpret_cast<const V8*>(x)[q];
      V8 rv{}, yv;
      if (res) rv = reinterpret_cast<const V8*>(res)[q];
#pragma unroll
      for (int j = 0; j < 8; ++j)
        yv.v[j] = dropout_one<T>(xv.v[j], res ? &rv.v[j] : nullptr, dropout_bits16(r, j),
                                 threshold, scale);
      reinterpret_cast<V8*>(y)[q] = yv;
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int64_t e = 8 * q + j;
        if (e < n)
          y[e] = dropout_one<T>(x[e], res ? res + e : nullptr, dropout_bits16(r, j), threshold,
                                scale);
      }
    }
  }
}

// ---- gather / scatter_add ----
template <typename T, typename I>
__global__ void gather_kernel(int64_t outer, int64_t len_in, int64_t len_idx, int64_t inner,
                              const T* __restrict__ in, const I* __restrict__ index,
                              T* __restrict__ out, int64_t* bad) {
  int64_t total = outer * len_idx * inner;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = e % inner, o = e / (inner * len_idx);
    int64_t t = int64_t(index[e]);
    if (t < 0 || t >= len_in) {
      report_bad(bad, e);
      out[e] = T(0);
      continue;
    }
    out[e] = in[(o * len_in + t) * inner + i];
  }
}

template <typename T, typename D, typename I>
__global__ void scatter_add_kernel(int64_t outer, int64_t len_in, int64_t len_idx, int64_t inner,
                                   const T* __restrict__ gout, const I* __restrict__ index,
                                   D* dst) {
  int64_t total = outer * len_idx * inner;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = e % inner, o = e / (inner * len_idx);
    int64_t t = int64_t(index[e]);
    if (t < 0 || t >= len_in) continue;  // rejected by the forward
    atomicAdd(dst + (o * len_in + t) * inner + i, D(acc_t<T>(gout[e])));
  }
}

// 16-bit outputs accumulate through an fp32 buffer of n elements (rounded once at the end);
// f32 and f64 accumulate in place and need none.
size_t fp32_accumulator_bytes(DType dtype, int64_t n) {
  return dtype == DType::bf16 || dtype == DType::f16 ? size_t(std::max<int64_t>(n, 1)) * sizeof(float)
                                                     : 0;
}

// Atomic accumulation: straight into the output for f32 / f64, through the fp32 workspace
// (zeroed here, rounded once at the end) for bf16 / f16.
template <typename T, typename I>
void launch_embedding_backward(int64_t rows, int64_t dim, int64_t vocab, const T* gout,
                               const I* idx, T* gweight, float* acc) {
  int blocks = grid_for(rows * dim);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    embedding_backward_kernel<T, T, I><<<blocks, 256>>>(rows, dim, vocab, gout, idx, gweight);
    FG_LAUNCH_CHECK();
  } else {
    FG_CUDA_CHECK(cudaMemsetAsync(acc, 0, size_t(vocab * dim) * sizeof(float), 0));
    embedding_backward_kernel<T, float, I><<<blocks, 256>>>(rows, dim, vocab, gout, idx, acc);
    FG_LAUNCH_CHECK();
    add_scratch_kernel<T><<<grid_for(vocab * dim), 256>>>(vocab * dim, acc, gweight);
    FG_LAUNCH_CHECK();
  }
}

template <typename T, typename I>
void launch_scatter_add(int64_t outer, int64_t len_in, int64_t len_idx, int64_t inner,
                        const T* gout, const I* index, T* gin, float* acc) {
  int blocks = grid_for(outer * len_idx * inner);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    scatter_add_kernel<T, T, I><<<blocks, 256>>>(outer, len_in, len_idx, inner, gout, index,
                                                 gin);
    FG_LAUNCH_CHECK();
  } else {
    int64_t n_in = outer * len_in * inner;
    FG_CUDA_CHECK(cudaMemsetAsync(acc, 0, size_t(n_in) * sizeof(float), 0));
    scatter_add_kernel<T, float, I><<<blocks, 256>>>(outer, len_in, len_idx, inner, gout, index,
                                                     acc);
    FG_LAUNCH_CHECK();
    add_scratch_kernel<T><<<grid_for(n_in), 256>>>(n_in, acc, gin);
    FG_LAUNCH_CHECK();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Launchers

void embedding(DType dtype, DType idx_dtype, int64_t rows, int64_t dim, int64_t vocab,
               const void* weight, const void* idx, void* out, int64_t* bad_index) {
  if (rows == 0 || dim == 0) return;
  FG_DISPATCH_FLOAT(dtype, "embedding", [&] {
    using T = scalar_t;
    FG_DISPATCH_INDEX(idx_dtype, "embedding", [&] {
      embedding_kernel<T, index_t><<<grid_for(rows * dim), 256>>>(
          rows, dim, vocab, static_cast<const T*>(weight), static_cast<const index_t*>(idx),
          static_cast<T*>(out), bad_index);
      FG_LAUNCH_CHECK();
    });
  });
}

namespace {
// One thread per element of the rows written, keys then values; T is a same-sized integer
// type (a copy).
template <typename T>
__global__ void kv_cache_write_kernel(int64_t batch, int64_t rows, int64_t row_elems,
                                      int64_t capacity, const T* __restrict__ src_k,
                                      const T* __restrict__ src_v, int64_t src_batch,
                                      int64_t src_row, const int32_t* __restrict__ pos,
                                      T* __restrict__ cache_k, T* __restrict__ cache_v,
                                      int64_t* bad) {
  const int64_t half = batch * rows * row_elems;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < 2 * half;
       e += int64_t(gridDim.x) * blockDim.x) {
    const bool value = e >= half;
    const int64_t x = value ? e - half : e;
    const int64_t c = x % row_elems, t = (x / row_elems) % rows, b = x / (row_elems * rows);
    const int64_t p = pos[b];
    if (p < 0 || p + rows > capacity) {
      if (!value && t == 0 && c == 0) report_bad(bad, b);
      continue;
    }
    (value ? cache_v : cache_k)[(b * capacity + p + t) * row_elems + c] =
        (value ? src_v : src_k)[b * src_batch + t * src_row + c];
  }
}
}  // namespace

void kv_cache_write(DType dtype, int64_t batch, int64_t T, int64_t row_elems, int64_t capacity,
                    const void* src_k, const void* src_v, int64_t src_batch, int64_t src_row,
                    const int32_t* pos, void* cache_k, void* cache_v, int64_t* bad_index) {
  if (batch == 0 || T == 0 || row_elems == 0) return;
  auto launch = [&](auto word) {
    using W = decltype(word);
    kv_cache_write_kernel<W><<<grid_for(2 * batch * T * row_elems), 256>>>(
        batch, T, row_elems, capacity, static_cast<const W*>(src_k), static_cast<const W*>(src_v),
        src_batch, src_row, pos, static_cast<W*>(cache_k), static_cast<W*>(cache_v), bad_index);
  };
  switch (dtype_size(dtype)) {
    case 2: launch(uint16_t{}); break;
    case 4: launch(uint32_t{}); break;
    case 8: launch(uint64_t{}); break;
    default: FG_CHECK(false, "kv_cache_write: dtype ", dtype_name(dtype), " is not supported");
  }
  FG_LAUNCH_CHECK();
}

size_t embedding_backward_workspace(DType dtype, int64_t vocab, int64_t dim) {
  return fp32_accumulator_bytes(dtype, vocab * dim);
}

void embedding_backward(DType dtype, DType idx_dtype, int64_t rows, int64_t dim, int64_t vocab,
                        const void* gout, const void* idx, void* gweight, void* workspace) {
  if (rows == 0 || dim == 0) return;
  FG_DISPATCH_FLOAT(dtype, "embedding_backward", [&] {
    FG_DISPATCH_INDEX(idx_dtype, "embedding_backward", [&] {
      launch_embedding_backward<scalar_t, index_t>(rows, dim, vocab,
                                                   static_cast<const scalar_t*>(gout),
                                                   static_cast<const index_t*>(idx),
                                                   static_cast<scalar_t*>(gweight),
                                                   static_cast<float*>(workspace));
    });
  });
}

void dropout(DType dtype, int64_t n, const void* x, const void* residual, void* y, double p,
             uint64_t seed, uint64_t offset) {
  if (n == 0) return;
  FG_DISPATCH_FLOAT(dtype, "dropout", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* xp = static_cast<const T*>(x);
    const T* rp = static_cast<const T*>(residual);
    T* yp = static_cast<T*>(y);
    auto aligned = [](const void* p) {
      return p == nullptr || reinterpret_cast<uintptr_t>(p) % (8 * sizeof(T)) == 0;
    };
    const bool vec = n % 8 == 0 && aligned(xp) && aligned(rp) && aligned(yp);
    // Same threshold and the same host-rounded scale as the CPU kernel: bitwise-equal output.
    const uint32_t threshold = dropout_threshold(p);
    const A scale = A(dropout_keep_scale(p));
    const int grid = elementwise_grid((n + 7) / 8);
    if (vec)
      dropout_kernel<T, true><<<grid, 256>>>(n, xp, rp, yp, threshold, scale, seed, offset);
    else
      dropout_kernel<T, false><<<grid, 256>>>(n, xp, rp, yp, threshold, scale, seed, offset);
    FG_LAUNCH_CHECK();
  });
}

void gather(DType dtype, DType idx_dtype, int64_t outer, int64_t len_in, int64_t len_idx,
            int64_t inner, const void* in, const void* index, void* out, int64_t* bad_index) {
  int64_t total = outer * len_idx * inner;
  if (total == 0) return;
  FG_DISPATCH_ALL(dtype, "gather", [&] {
    using T = scalar_t;
    FG_DISPATCH_INDEX(idx_dtype, "gather", [&] {
      gather_kernel<T, index_t><<<grid_for(total), 256>>>(
          outer, len_in, len_idx, inner, static_cast<const T*>(in),
          static_cast<const index_t*>(index), static_cast<T*>(out), bad_index);
      FG_LAUNCH_CHECK();
    });
  });
}

size_t scatter_add_workspace(DType dtype, int64_t n_in) {
  return fp32_accumulator_bytes(dtype, n_in);
}

void scatter_add(DType dtype, DType idx_dtype, int64_t outer, int64_t len_in, int64_t len_idx,
                 int64_t inner, const void* gout, const void* index, void* gin, void* workspace) {
  if (outer * len_idx * inner == 0) return;
  FG_DISPATCH_FLOAT(dtype, "scatter_add", [&] {
    FG_DISPATCH_INDEX(idx_dtype, "scatter_add", [&] {
      launch_scatter_add<scalar_t, index_t>(outer, len_in, len_idx, inner,
                                            static_cast<const scalar_t*>(gout),
                                            static_cast<const index_t*>(index),
                                            static_cast<scalar_t*>(gin),
                                            static_cast<float*>(workspace));
    });
  });
}

}  // namespace fg::cuda
