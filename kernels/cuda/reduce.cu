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
// Every kernel grid-strides over its work items, so any size fits a bounded grid. When the work
// items are too few to fill the GPU (one long row, a few columns of many rows: the sum of a
// bias gradient over 16k tokens), len is split into S slices: a first pass writes each slice's
// partial result (in the accumulator type) to the workspace as [outer, S, inner], a second
// pass reduces that over S. The order of accumulation is fixed by the launch shape, so results
// are deterministic run to run. Accumulators: float for f32/bf16/f16, double for f64, int64
// for integers; a sum of bf16/f16 may return the float accumulator unrounded.
#include <algorithm>
#include <type_traits>

#include "kernels/common/elementwise_math.h"
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_reduce.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {
namespace {

// A reduction as a small algebra on per-thread states: init (the identity), make (one element
// at position j), combine (associative and commutative), shfl (move a state across lanes),
// finish (the stored result).
template <typename T, ReduceOp OP, typename O = T>
struct ValueReducer {
  using C = compute_t<T>;
  using Out = O;
  struct State {
    C v;
  };
  __device__ static State init() { return {reduce_identity<OP, C>()}; }
  __device__ static State make(C v, int64_t) { return {v}; }
  __device__ static State combine(State a, State b) { return {reduce_combine<OP, C>(a.v, b.v)}; }
  __device__ static State shfl(State s, int mask) { return {shfl_xor(s.v, mask)}; }
  __device__ static Out finish(State s) { return store_as<Out>(s.v); }
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

// Item k = (row r, slice s) of S slices of L elements: out[k] reduces row r's [s L, s L + L).
template <typename T, typename R>
__global__ void reduce_rows_block(int64_t rows, int64_t len, int64_t S, int64_t L, const T* in,
                                  typename R::Out* out) {
  using C = typename R::C;
  __shared__ typename R::State partial[kRowBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t k = blockIdx.x; k < rows * S; k += gridDim.x) {
    const T* p = in + (k / S) * len;
    const int64_t begin = (k % S) * L, end = min(len, begin + L);
    typename R::State s = R::init();
    for (int64_t j = begin + threadIdx.x; j < end; j += kRowBlock)
      s = R::combine(s, R::make(load_as<C>(p[j]), j));
    s = warp_reduce<R>(s);
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (warp == 0) {
      s = lane < kRowBlock / 32 ? partial[lane] : R::init();
      s = warp_reduce<R>(s);
      if (lane == 0) out[k] = R::finish(s);
    }
    __syncthreads();  // partial[] is reused by the next item
  }
}

// Tile t = (outer o, slice s, 32 columns): out[(o S + s) inner + i] reduces column i of
// rows [s L, s L + L) of [len, inner] block o.
template <typename T, typename R>
__global__ void reduce_cols(int64_t outer, int64_t len, int64_t inner, int64_t S, int64_t L,
                            const T* in, typename R::Out* out) {
  using C = typename R::C;
  __shared__ typename R::State partial[kColsY][kColsX + 1];  // +1: no bank conflicts
  const int64_t tiles_per_slice = (inner + kColsX - 1) / kColsX;
  const int64_t tiles = outer * S * tiles_per_slice;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t os = t / tiles_per_slice, o = os / S;
    const int64_t i = (t % tiles_per_slice) * kColsX + threadIdx.x;
    const int64_t begin = (os % S) * L, end = min(len, begin + L);
    typename R::State s = R::init();
    if (i < inner) {
      const T* p = in + o * len * inner + i;
      for (int64_t j = begin + threadIdx.y; j < end; j += kColsY)
        s = R::combine(s, R::make(load_as<C>(p[j * inner]), j));
    }
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0) {
      for (int k = 1; k < kColsY; ++k) s = R::combine(s, partial[k][threadIdx.x]);
      if (i < inner) out[os * inner + i] = R::finish(s);
    }
    __syncthreads();  // partial[] is reused by the next tile
  }
}

int num_sms() { return std::max(1, cuda_current_device_info().sm_count); }

int clamp_grid(int64_t want) {
  return int(std::max<int64_t>(1, std::min<int64_t>(want, 16 * int64_t(num_sms()))));
}

// Slices of len for a split reduction: enough work items for about four per SM, each slice
// long enough to be worth a block (2048 elements of a row, 256 rows of a column tile). 1: none.
int64_t split_slices(int64_t outer, int64_t len, int64_t inner) {
  const int64_t items = inner == 1 ? (len <= 1024 ? (outer + 7) / 8 : outer)
                                   : outer * ((inner + kColsX - 1) / kColsX);
  const int64_t want = 4 * int64_t(num_sms());
  if (items * 2 >= want) return 1;
  const int64_t most = inner == 1 ? len / 2048 : len / 256;
  return std::max<int64_t>(1, std::min((want + items - 1) / items, most));
}

// One pass over [outer, len, inner] in slices of L (S = 1, L = len: the whole of len).
template <typename T, typename R>
void launch_pass(int64_t outer, int64_t len, int64_t inner, int64_t S, int64_t L, const T* in,
                 typename R::Out* out) {
  if (inner == 1) {
    if (S == 1 && len <= 1024) {
      int64_t warps_per_block = kWarpKernelThreads / 32;
      reduce_rows_warp<T, R><<<clamp_grid((outer + warps_per_block - 1) / warps_per_block),
                               kWarpKernelThreads>>>(outer, len, in, out);
    } else {
      reduce_rows_block<T, R><<<clamp_grid(outer * S), kRowBlock>>>(outer, len, S, L, in, out);
    }
  } else {
    int64_t tiles = outer * S * ((inner + kColsX - 1) / kColsX);
    reduce_cols<T, R><<<clamp_grid(tiles), dim3(kColsX, kColsY)>>>(outer, len, inner, S, L, in,
                                                                     out);
  }
  FG_LAUNCH_CHECK();
}

template <typename T, typename R>
void launch_reduce(int64_t outer, int64_t len, int64_t inner, const T* in,
                   typename R::Out* out) {
  launch_pass<T, R>(outer, len, inner, 1, len, in, out);
}

}  // namespace

size_t reduce_workspace(ReduceOp op, DType dtype, int64_t outer, int64_t len, int64_t inner) {
  if (outer * inner == 0) return 0;
  const int64_t S = split_slices(outer, len, inner);
  if (S == 1) return 0;
  size_t acc = 4;
  FG_DISPATCH_ALL(dtype, "reduce", [&] { acc = sizeof(compute_t<scalar_t>); });
  return size_t(outer * S * inner) * acc;
}

void reduce(ReduceOp op, DType dtype, DType out_dtype, int64_t outer, int64_t len, int64_t inner,
            const void* in, void* out, void* workspace) {
  FG_CHECK(outer >= 0 && len >= 0 && inner >= 0, "reduce: negative size");
  FG_CHECK(len > 0 || op == ReduceOp::sum, "reduce: max/min over an empty dim (len 0) has no value");
  check_reduce_out_dtype(op, dtype, out_dtype);
  if (outer * inner == 0) return;
  const int64_t S = split_slices(outer, len, inner);
  FG_CHECK(S == 1 || workspace != nullptr, "reduce: a split reduction needs its workspace");
  FG_DISPATCH_ALL(dtype, "reduce", [&] {
    using T = scalar_t;
    using C = compute_t<T>;
    FG_DISPATCH_REDUCE_OP(op, [&] {
      auto run = [&](auto* o) {
        using Out = std::remove_pointer_t<decltype(o)>;
        if (S == 1) {
          launch_reduce<T, ValueReducer<T, kOp, Out>>(outer, len, inner,
                                                      static_cast<const T*>(in), o);
          return;
        }
        // Partial results in the accumulator type, then the slices reduced.
        C* partial = static_cast<C*>(workspace);
        launch_pass<T, ValueReducer<T, kOp, C>>(outer, len, inner, S, (len + S - 1) / S,
                                                static_cast<const T*>(in), partial);
        launch_reduce<C, ValueReducer<C, kOp, Out>>(outer, S, inner, partial, o);
      };
      if (out_dtype != dtype) {
        if constexpr (std::is_same_v<C, float>) run(static_cast<float*>(out));
      } else {
        run(static_cast<T*>(out));
      }
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
