// The fused AdamW update on CUDA, per tensor and over many tensors at once, and the
// multi-tensor sum of squares behind gradient-norm clipping. The per-element arithmetic is the
// CPU kernel's (kernels/optim.h), so AdamW results are bit-identical.
//
// The multi-tensor kernels take a table of tensors as a kernel argument (a batch of up to
// kBatch tensors per launch, so the table stays under the 4 KB argument limit): block b works
// on chunk b - block_start[t] of the tensor t whose range of blocks holds b. A GPT's 150 or
// 300 parameters take a few launches instead of one (or five, for the norm) per tensor.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/cuda_check.h"
#include "core/cuda_reduce.cuh"
#include "core/dispatch.h"
#include "kernels/optim.h"

namespace fg::cuda {

namespace {

__global__ void adamw_f32_kernel(int64_t n, float* __restrict__ p, const float* __restrict__ g,
                                 float* __restrict__ m, float* __restrict__ v, AdamWArgs a) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_update(pi, g[i], mi, vi, a);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

template <typename T>
__global__ void adamw_half_kernel(int64_t n, T* __restrict__ p, float* __restrict__ master,
                                  const T* __restrict__ g, float* __restrict__ m,
                                  float* __restrict__ v, AdamWArgs a) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float pi = master[i], mi = m[i], vi = v[i];
    adamw_update(pi, float(g[i]), mi, vi, a);
    master[i] = pi;
    p[i] = T(pi);
    m[i] = mi;
    v[i] = vi;
  }
}

unsigned grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

constexpr int kBatch = 40;
constexpr int kMultiThreads = 256;

template <typename Entry>
struct Batch {
  int count = 0;
  int block_start[kBatch + 1] = {};  // blocks of tensor t: [block_start[t], block_start[t + 1])
  Entry t[kBatch];
};

// The tensor of block b (block_start is sorted; a short linear scan beats a search here).
template <typename Entry>
__device__ int tensor_of(const Batch<Entry>& batch, int b) {
  int t = 0;
  while (t + 1 < batch.count && b >= batch.block_start[t + 1]) ++t;
  return t;
}

template <typename T>
__global__ void __launch_bounds__(kMultiThreads)
    adamw_multi_kernel(Batch<AdamWTensor> batch, AdamWArgs a) {
  const int t = tensor_of(batch, blockIdx.x);
  const AdamWTensor& e = batch.t[t];
  const int64_t begin = int64_t(blockIdx.x - batch.block_start[t]) * kMultiTensorChunk;
  const int64_t end = std::min(e.n, begin + kMultiTensorChunk);
  T* p = static_cast<T*>(e.param);
  const T* g = static_cast<const T*>(e.grad);
  for (int64_t i = begin + threadIdx.x; i < end; i += kMultiThreads) {
    float mi = e.exp_avg[i], vi = e.exp_avg_sq[i];
    if constexpr (std::is_same_v<T, float>) {
      float pi = p[i];
      adamw_update(pi, g[i], mi, vi, a);
      p[i] = pi;
    } else {
      float pi = e.master[i];
      adamw_update(pi, float(g[i]), mi, vi, a);
      e.master[i] = pi;
      p[i] = T(pi);
    }
    e.exp_avg[i] = mi;
    e.exp_avg_sq[i] = vi;
  }
}

// One partial sum per chunk: float for 16- and 32-bit data, double for f64.
template <typename T>
__global__ void __launch_bounds__(kMultiThreads)
    squares_kernel(Batch<SquaresTensor> batch, int partial_base, double* partials) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ Acc warp_sums[kMultiThreads / 32];
  const int t = tensor_of(batch, blockIdx.x);
  const SquaresTensor& e = batch.t[t];
  const int64_t begin = int64_t(blockIdx.x - batch.block_start[t]) * kMultiTensorChunk;
  const int64_t end = std::min(e.n, begin + kMultiTensorChunk);
  const T* p = static_cast<const T*>(e.data);
  Acc s = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kMultiThreads) {
    const Acc v = Acc(p[i]);
    s += v * v;
  }
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    s = threadIdx.x < kMultiThreads / 32 ? warp_sums[threadIdx.x] : Acc(0);
    s = warp_sum(s);
    if (threadIdx.x == 0) partials[partial_base + blockIdx.x] = double(s);
  }
}

// The partials in a fixed order: thread i adds i, i + 256, ..., then a tree over threads.
__global__ void __launch_bounds__(kMultiThreads) sum_partials_kernel(int n, const double* partials,
                                                                     double* out) {
  __shared__ double warp_sums[kMultiThreads / 32];
  double s = 0;
  for (int i = threadIdx.x; i < n; i += kMultiThreads) s += partials[i];
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    s = threadIdx.x < kMultiThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
    s = warp_sum(s);
    if (threadIdx.x == 0) *out = s;
  }
}

int64_t chunks_of(int64_t n) { return (n + kMultiTensorChunk - 1) / kMultiTensorChunk; }

// Calls launch(batch, first_block) for batches of up to kBatch tensors (empty ones skipped);
// first_block counts the blocks of the batches before. Returns the total number of blocks.
template <typename Entry, typename Launch>
int64_t for_each_batch(int count, const Entry* tensors, Launch&& launch) {
  Batch<Entry> batch;
  int64_t first = 0;
  int blocks = 0;
  auto flush = [&] {
    if (batch.count == 0) return;
    launch(batch, int(first));
    first += blocks;
    batch = Batch<Entry>();
    blocks = 0;
  };
  for (int i = 0; i < count; ++i) {
    if (tensors[i].n == 0) continue;
    const int64_t c = chunks_of(tensors[i].n);
    FG_CHECK(c < (int64_t(1) << 30), "multi-tensor kernel: a tensor of ", tensors[i].n,
             " elements is too large");
    if (batch.count == kBatch || int64_t(blocks) + c >= (int64_t(1) << 31)) flush();
    batch.t[batch.count] = tensors[i];
    batch.block_start[batch.count] = blocks;
    blocks += int(c);
    batch.block_start[++batch.count] = blocks;
  }
  flush();
  return first;
}

}  // namespace

void adamw_multi(DType param_dtype, int count, const AdamWTensor* tensors, const AdamWArgs& args) {
  for (int i = 0; i < count; ++i)
    FG_CHECK((param_dtype == DType::f32) == (tensors[i].master == nullptr), "adamw_multi: ",
             param_dtype == DType::f32 ? "fp32 parameters are their own master copy"
                                       : "16-bit parameters need an fp32 master copy");
  auto run = [&](auto zero) {
    using T = decltype(zero);
    for_each_batch(count, tensors, [&](const Batch<AdamWTensor>& b, int) {
      adamw_multi_kernel<T><<<b.block_start[b.count], kMultiThreads>>>(b, args);
      FG_LAUNCH_CHECK();
    });
  };
  switch (param_dtype) {
    case DType::f32: run(float()); break;
    case DType::bf16: run(bfloat16()); break;
    case DType::f16: run(float16()); break;
    default:
      throw Error(str("adamw_multi: parameter dtype ", dtype_name(param_dtype),
                      " is not supported (use f32, or bf16/f16 with an fp32 master copy)"));
  }
}

size_t sum_squares_workspace(int count, const SquaresTensor* tensors) {
  int64_t blocks = 0;
  for (int i = 0; i < count; ++i) blocks += chunks_of(tensors[i].n);
  return size_t(std::max<int64_t>(blocks, 1)) * sizeof(double);
}

void sum_squares(DType dtype, int count, const SquaresTensor* tensors, double* out,
                 void* workspace) {
  double* partials = static_cast<double*>(workspace);
  int64_t total = 0;
  FG_DISPATCH_FLOAT(dtype, "sum_squares", [&] {
    total = for_each_batch(count, tensors, [&](const Batch<SquaresTensor>& b, int first) {
      squares_kernel<scalar_t><<<b.block_start[b.count], kMultiThreads>>>(b, first, partials);
      FG_LAUNCH_CHECK();
    });
  });
  FG_CHECK(total < (int64_t(1) << 31), "sum_squares: too many elements");
  sum_partials_kernel<<<1, kMultiThreads>>>(int(total), partials, out);
  FG_LAUNCH_CHECK();
}

void adamw(DType param_dtype, int64_t n, void* param, float* master, const void* grad,
           float* exp_avg, float* exp_avg_sq, const AdamWArgs& args) {
  if (n == 0) return;
  constexpr int threads = 256;
  const unsigned grid = grid_for(n, threads);
  switch (param_dtype) {
    case DType::f32:
      FG_CHECK(master == nullptr, "adamw: fp32 parameters are their own master copy");
      adamw_f32_kernel<<<grid, threads>>>(n, static_cast<float*>(param),
                                          static_cast<const float*>(grad), exp_avg, exp_avg_sq,
                                          args);
      break;
    case DType::bf16:
      FG_CHECK(master != nullptr, "adamw: bf16 parameters need an fp32 master copy");
      adamw_half_kernel<bfloat16><<<grid, threads>>>(n, static_cast<bfloat16*>(param), master,
                                                     static_cast<const bfloat16*>(grad), exp_avg,
                                                     exp_avg_sq, args);
      break;
    case DType::f16:
      FG_CHECK(master != nullptr, "adamw: f16 parameters need an fp32 master copy");
      adamw_half_kernel<float16><<<grid, threads>>>(n, static_cast<float16*>(param), master,
                                                    static_cast<const float16*>(grad), exp_avg,
                                                    exp_avg_sq, args);
      break;
    default:
      throw Error(str("adamw: parameter dtype ", dtype_name(param_dtype),
                      " is not supported (use f32, or bf16/f16 with an fp32 master copy)"));
  }
  FG_LAUNCH_CHECK();
}

}  // namespace fg::cuda
