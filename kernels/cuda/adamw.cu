// The fused AdamW update on CUDA over many tensors at once (one tensor is a batch of one), and
// the multi-tensor sum of squares behind gradient-norm clipping. The per-element arithmetic is
// the CPU kernel's (kernels/optim.h), so AdamW results are bit-identical.
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
  __shared__ Acc buf[32];
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
  s = block_sum(s, buf);
  if (threadIdx.x == 0) partials[partial_base + blockIdx.x] = double(s);
}

// The partials in a fixed order: thread i adds i, i + 256, ..., then a tree over threads.
__global__ void __launch_bounds__(kMultiThreads) sum_partials_kernel(int n, const double* partials,
                                                                     double* out) {
  __shared__ double buf[32];
  double s = 0;
  for (int i = threadIdx.x; i < n; i += kMultiThreads) s += partials[i];
  s = block_sum(s, buf);
  if (threadIdx.x == 0) *out = s;
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
  FG_CHECK(param_dtype == DType::f32 || param_dtype == DType::bf16 || param_dtype == DType::f16,
           "adamw: parameter dtype ", dtype_name(param_dtype),
           " is not supported (use f32, or bf16/f16 with an fp32 master copy)");
  for (int i = 0; i < count; ++i) {
    if (param_dtype == DType::f32)
      FG_CHECK(tensors[i].master == nullptr, "adamw: fp32 parameters are their own master copy");
    else
      FG_CHECK(tensors[i].master != nullptr, "adamw: ", dtype_name(param_dtype),
               " parameters need an fp32 master copy");
  }
  auto run = [&](auto zero) {
    using T = decltype(zero);
    for_each_batch(count, tensors, [&](const Batch<AdamWTensor>& b, int) {
      adamw_multi_kernel<T><<<b.block_start[b.count], kMultiThreads>>>(b, args);
      FG_LAUNCH_CHECK();
    });
  };
  if (param_dtype == DType::f32) run(float());
  else if (param_dtype == DType::bf16) run(bfloat16());
  else run(float16());
}

// One tensor is a batch of one.
void adamw(DType param_dtype, int64_t n, void* param, float* master, const void* grad,
           float* exp_avg, float* exp_avg_sq, const AdamWArgs& args) {
  const AdamWTensor t{param, master, grad, exp_avg, exp_avg_sq, n};
  adamw_multi(param_dtype, 1, &t, args);
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

}  // namespace fg::cuda
