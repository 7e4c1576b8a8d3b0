// Helpers shared by the CUDA kernels of the neural-network ops (nn_rows.cu: softmax,
// cross-entropy, LayerNorm; nn_index.cu: embedding, dropout, gather / scatter-add): device math
// in the accumulation type, the first-bad-position flag, and launch shapes. Private to those
// two files (an anonymous namespace: each gets its own copy).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "core/cuda_check.h"
#include "core/cuda_reduce.cuh"
#include "core/error.h"
#include "kernels/kernels.h"

namespace fg::cuda {

namespace {

template <typename T>
using acc_t = typename acc_type<T>::type;


// ---- device math in the accumulation type ----
__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return ::exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return ::log(x); }
__device__ __forceinline__ float dsqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double dsqrt(double x) { return ::sqrt(x); }
template <typename A> __device__ __forceinline__ A neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -INFINITY; }
template <> __device__ __forceinline__ double neg_inf<double>() { return -(double)INFINITY; }

// flag = min(flag, pos + 1), treating 0 as "nothing reported yet".
__device__ void report_bad(int64_t* flag, int64_t pos) {
  auto* f = reinterpret_cast<unsigned long long*>(flag);
  unsigned long long want = (unsigned long long)(pos + 1);
  unsigned long long old = *reinterpret_cast<volatile unsigned long long*>(f);
  while (old == 0ull || old > want) {
    unsigned long long prev = atomicCAS(f, old, want);
    if (prev == old) break;
    old = prev;
  }
}

// Threads per block for a row of `cols`: enough to cover short rows, at most 512.
int row_threads(int64_t cols) {
  int t = 32;
  while (t < 512 && t < cols) t *= 2;
  return t;
}
int grid_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  return int(std::max<int64_t>(1, std::min<int64_t>(b, 65535 * 8)));
}
void check_rows(int64_t rows, const char* op) {
  FG_CHECK(rows <= 0x7fffffffLL, op, " (cuda): ", rows, " rows exceed the grid limit 2^31-1");
}

}  // namespace

}  // namespace fg::cuda
