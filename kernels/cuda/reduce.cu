// CUDA reductions over the middle dim of a contiguous [outer, len, inner] array: sum, max, min
// and argmax.
//
// Three shapes of work, picked by the launcher:
//   inner == 1, len <= 1024   a warp per row: lanes stride the row, then a shuffle tree
//   inner == 1, len  > 1024   a block per row: threads stride the row, shuffle trees per warp,
//                             then one warp combines the warps' partials from shared memory
//   inner  > 1                a 32 x 16 block per (outer, 32 columns): threadIdx.x runs along
//                             inner so loads are coalesced, threadIdx.y splits len, and the 16
//                             partials of each column meet in shared memory
// Every kernel grid-strides over its work items, so any size fits a bounded grid. The order
// of accumulation is fixed by the launch shape, so results are deterministic run to run.
// Accumulators: float for f32/bf16/f16, double for f64, int64 for integers.
#include <algorithm>

#include "kernels/common/elementwise_math.h"
#include "core/cuda_check.h"
#include "core/cuda_reduce.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {
namespace {

// A reduction as a small algebra on per-thread states: init (the identity), make (one element
// at position j), combine (associative and commutative), shfl (move a state across lanes),
// finish (the stored result).
template <typename T, ReduceOp OP>
struct ValueReducer {
  using C = compute_t<T>;
  using Out = T;
  struct State {
    C v;
  };
  __device__ static State init() { return {reduce_identity<OP, C>()}; }
  __device__ static State make(C v, int64_t) { return {v}; }
  __device__ static State combine(State a, State b) { return {reduce_combine<OP, C>(a.v, b.v)}; }
  __device__ static State shfl(State s, int mask) { return {shfl_xor(s.v, mask)}; }
  __device__ static Out finish(State s) { return store_as<T>(s.v); }
};

// Argmax: the state is (value, index); index -1 marks the empty state so the identity needs
// no "smallest value" (and NaN handling stays in argmax_better).
template <typename T>
struct ArgmaxReducer {
  using C = compute_t<T>;
  using Out = int64_t;
  struct State {
    C v;
    int64_t j;
  };
  __device__ static State init() { return {C(0), -1}; }
  __device__ static State make(C v, int64_t j) { return {v, j}; }
  __device__ static State combine(State a, State b) {
    if (a.j < 0) return b;
    if (b.j < 0) return a;
    return argmax_better(b.v, b.j, a.v, a.j) ? b : a;
  }
  __device__ static State shfl(State s, int mask) {
    return {shfl_xor(s.v, mask), shfl_xor(s.j, mask)};
  }
  __device__ static Out finish(State s) { return s.j; }
};

template <typename R>
__device__ typename R::State warp_reduce(typename R::State s) {
  for (int m = 16; m > 0; m >>= 1) s = R::combine(s, R::shfl(s, m));
  return s;  // every lane holds the result
}

constexpr int kWarpKernelThreads = 256;
constexpr int kRowBlock = 512;
constexpr int kColsX = 32, kColsY = 16;

template <typename T, typename R>
__global__ void reduce_rows_warp(int64_t rows, int64_t len, const T* in, typename R::Out* out) {
  using C = typename R::C;
  const int lane = threadIdx.x & 31;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t num_warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  // The loop bound is the same for all lanes of a warp, so full-mask shuffles are safe.
  for (int64_t r = warp; r < rows; r += num_warps) {
    const T* p = in + r * len;
    typename R::State s = R::init();
    for (int64_t j = lane; j < len; j += 32) s = R::combine(s, R::make(load_as<C>(p[j]), j));
    s = warp_reduce<R>(s);
    if (lane == 0) out[r] = R::finish(s);
  }
}

template <typename T, typename R>
__global__ void reduce_rows_block(int64_t rows, int64_t len, const T* in, typename R::Out* out) {
  using C = typename R::C;
  __shared__ typename R::State partial[kRowBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* p = in + r * len;
    typename R::State s = R::init();
    for (int64_t j = threadIdx.x; j < len; j += kRowBlock)
      s = R::combine(s, R::make(load_as<C>(p[j]), j));
    s = warp_reduce<R>(s);
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
      s = lane < kRowBlock / 32 ? partial[lane] : R::init();
      s = warp_reduce<R>(s);
      if (lane == 0) out[r] = R::finish(s);
    }
    __syncthreads();  // partial[] is reused by the next row
  }
}

template <typename T, typename R>
__global__ void reduce_cols(int64_t outer, int64_t len, int64_t inner, const T* in,
                            typename R::Out* out) {
  using C = typename R::C;
  __shared__ typename R::State partial[kColsY][kColsX + 1];  // +1: no bank conflicts
  const int64_t tiles_per_outer = (inner + kColsX - 1) / kColsX;
  const int64_t tiles = outer * tiles_per_outer;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t o = t / tiles_per_outer;
    const int64_t i = (t % tiles_per_outer) * kColsX + threadIdx.x;
    typename R::State s = R::init();
    if (i < inner) {
      const T* p = in + o * len * inner + i;
      for (int64_t j = threadIdx.y; j < len; j += kColsY)
        s = R::combine(s, R::make(load_as<C>(p[j * inner]), j));
    }
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0) {
      for (int k = 1; k < kColsY; ++k) s = R::combine(s, partial[k][threadIdx.x]);
      if (i < inner) out[o * inner + i] = R::finish(s);
    }
    __syncthreads();  // partial[] is reused by the next tile
  }
}

int max_blocks() {
  static int blocks = [] {
    int dev = 0, sms = 0;
    FG_CUDA_CHECK(cudaGetDevice(&dev));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return std::max(1, sms) * 16;
  }();
  return blocks;
}

int clamp_grid(int64_t want) {
  return int(std::max<int64_t>(1, std::min<int64_t>(want, max_blocks())));
}

template <typename T, typename R>
void launch_reduce(int64_t outer, int64_t len, int64_t inner, const T* in,
                   typename R::Out* out) {
  if (inner == 1) {
    if (len <= 1024) {
      int64_t warps_per_block = kWarpKernelThreads / 32;
      reduce_rows_warp<T, R><<<clamp_grid((outer + warps_per_block - 1) / warps_per_block),
                               kWarpKernelThreads>>>(outer, len, in, out);
    } else {
      reduce_rows_block<T, R><<<clamp_grid(outer), kRowBlock>>>(outer, len, in, out);
    }
  } else {
    int64_t tiles = outer * ((inner + kColsX - 1) / kColsX);
    reduce_cols<T, R><<<clamp_grid(tiles), dim3(kColsX, kColsY)>>>(outer, len, inner, in, out);
  }
  FG_LAUNCH_CHECK();
}

}  // namespace

void reduce(ReduceOp op, DType dtype, int64_t outer, int64_t len, int64_t inner, const void* in,
            void* out) {
  FG_CHECK(outer >= 0 && len >= 0 && inner >= 0, "reduce: negative size");
  FG_CHECK(len > 0 || op == ReduceOp::sum, "reduce: max/min over an empty dim (len 0) has no value");
  if (outer * inner == 0) return;
  FG_DISPATCH_ALL(dtype, "reduce", [&] {
    FG_DISPATCH_REDUCE_OP(op, [&] {
      launch_reduce<scalar_t, ValueReducer<scalar_t, kOp>>(
          outer, len, inner, static_cast<const scalar_t*>(in), static_cast<scalar_t*>(out));
    });
  });
}

void argmax(DType dtype, int64_t outer, int64_t len, int64_t inner, const void* in,
            int64_t* out) {
  FG_CHECK(len > 0, "argmax: the reduced dim is empty (len 0)");
  if (outer * inner == 0) return;
  FG_DISPATCH_ALL(dtype, "argmax", [&] {
    launch_reduce<scalar_t, ArgmaxReducer<scalar_t>>(outer, len, inner,
                                                      static_cast<const scalar_t*>(in), out);
  });
}

}  // namespace fg::cuda
