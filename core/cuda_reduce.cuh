// Warp and block reductions for CUDA kernels: the one set every kernel family uses.
//
// warp_allreduce(v, op) combines the 32 lanes' values with a butterfly of __shfl_xor_sync, so
// every lane ends with the result; block_allreduce does the same over a whole block through a
// 32-entry shared buffer. Both need every lane of each warp to take part (full-mask shuffles).
// The order of combination is fixed by the lane and warp numbers, so results are
// deterministic from run to run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace fg {

// __shfl_xor_sync for any 32- or 64-bit arithmetic type (integers move as long long).
template <typename T> __device__ __forceinline__ T shfl_xor(T v, int lane_mask) {
  if constexpr (std::is_integral<T>::value)
    return T(__shfl_xor_sync(0xffffffffu, (long long)v, lane_mask));
  else
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

struct SumOp {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
// Keeps `a` when the two compare unordered, so a NaN already held is kept and a NaN arriving
// from another lane is not taken: the softmax kernels then turn it into NaN outputs either way.
struct MaxOp {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const {
    return b > a ? b : a;
  }
};

template <typename T, typename Op> __device__ __forceinline__ T warp_allreduce(T v, Op op) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = op(v, shfl_xor(v, m));
  return v;
}
template <typename T> __device__ __forceinline__ T warp_sum(T v) { return warp_allreduce(v, SumOp{}); }
template <typename T> __device__ __forceinline__ T warp_max(T v) { return warp_allreduce(v, MaxOp{}); }

// Block-wide reduction; every thread gets the result. `buf` is 32 entries of shared memory;
// the leading barrier lets consecutive calls reuse it. `identity` fills the slots of warps
// the block does not have.
template <typename T, typename Op>
__device__ T block_allreduce(T v, Op op, T identity, T* buf) {
  v = warp_allreduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  if (warp == 0) {
    T w = lane < nwarps ? buf[lane] : identity;
    w = warp_allreduce(w, op);
    if (lane == 0) buf[0] = w;
  }
  __syncthreads();
  return buf[0];
}
template <typename T> __device__ T block_sum(T v, T* buf) {
  return block_allreduce(v, SumOp{}, T(0), buf);
}
template <typename T> __device__ T block_max(T v, T* buf) {
  return block_allreduce(v, MaxOp{}, T(-INFINITY), buf);
}

}  // namespace fg
