// CUDA reductions over the middle dim of a contiguous [outer, len, inner] array: sum, max, min
// and argmax.
//
// Four shapes of work, picked by the launcher:
//   inner == 1, len <= 1024   a warp per row: lanes stride the row, then a shuffle tree
//   inner == 1, len  > 1024   a block per row: threads stride the row, shuffle trees per warp,
//                             then one warp combines the warps' partials from shared memory
//   inner  > 1, vectors       f32/bf16/f16 (argmax too), inner a multiple of V = 16 / sizeof(T),
//                             a 16-byte aligned input: an X x 256/X block per (outer, X V
//                             columns), X = inner / V rounded up to a power of 2, at most 32.
//                             Thread (x, y) loads 16-byte vectors (V columns, V states) from rows
//                             y, y + 256/X, ..., 4 rows in flight; the partials of a column meet
//                             by shuffles within a warp (X < 32), then over the 8 warps in shared
//                             memory. A warp's load is 512 bytes of a row (or of 32 / X rows)
//   inner  > 1, otherwise     a 32 x 16 block per (outer, 32 columns): threadIdx.x runs along
//                             inner so loads are coalesced, threadIdx.y splits len, and the 16
//                             partials of each column meet in shared memory
// Every kernel grid-strides over its work items, so any size fits a bounded grid. When the work
// items are too few to fill the GPU (one long row, a few columns of many rows: the sum of a
// bias gradient over 16k tokens), len is split into S slices: a first pass writes each slice's
// partial result (in the accumulator type) to the workspace as [outer, S, inner], a second
// pass reduces that over S. The order of accumulation is fixed by the launch shape, so results
// are deterministic run to run (the same values at a 16-byte aligned address or not take the
// vector or the scalar shape, and may differ in the last bits). Accumulators: float for f32/bf16/f16, double for f64, int64
// for integers; a sum of bf16/f16 may return the float accumulator unrounded.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
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
constexpr int kVecBlock = 256, kVecWarps = kVecBlock / 32, kVecUnroll = 4;
// The fewest rows of a split column slice: 16 per thread of the 32 x 16 block; 16 per thread
// of a 32 x 8 vector block (fewer rows a thread for narrower ones), where the second pass (4
// bytes a column a slice) then reads at most 1/64 of the first pass's bytes.
constexpr int64_t kColsMinRows = 256, kVecMinRows = 128;

// Elements of a 16-byte vector for the vector column path: 8 for bf16/f16, 4 for f32; 1 (no
// vector path) for the types that do not accumulate in float.
template <typename T>
constexpr int vec_width() {
  return std::is_same<compute_t<T>, float>::value ? int(16 / sizeof(T)) : 1;
}

// Lanes along inner of a vector column block for nvec vectors a row: the power of 2 that
// covers them, at most 32 (a narrow array gets 32 / X rows a warp).
__host__ __device__ inline int vec_lanes(int64_t nvec) {
  int x = 1;
  while (x < 32 && x < nvec) x *= 2;
  return x;
}

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

// The V elements of a 16-byte vector (V columns of row j) combined into their columns' states.
template <typename T, typename R, int V>
__device__ __forceinline__ void combine_vec(typename R::State (&s)[V], uint4 v, int64_t j) {
  static_assert(V == vec_width<T>() && V > 1, "a vector of f32, bf16 or f16");
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int c = 0; c < V; ++c) {
    float f;
    if constexpr (std::is_same<T, float>::value) {
      f = __uint_as_float(w[c]);
    } else if constexpr (std::is_same<T, bfloat16>::value) {
      f = __uint_as_float(c & 1 ? w[c / 2] & 0xffff0000u : w[c / 2] << 16);
    } else {
      static_assert(std::is_same<T, float16>::value, "f16");
      f = __half2float(__ushort_as_half((unsigned short)(c & 1 ? w[c / 2] >> 16 : w[c / 2])));
    }
    s[c] = R::combine(s[c], R::make(f, j));
  }
}

// The vector path of reduce_cols (T of V elements a 16-byte vector, inner a multiple of V, in
// 16-byte aligned). Tile t = (outer o, slice s, X V columns), X = blockDim.x: out[(o S + s)
// inner + i] reduces column i of rows [s L, s L + L) of [len, inner] block o. Each thread
// combines its rows in order, then the rows of a warp in a fixed shuffle order, then warps 0..7.
template <typename T, typename R, int V>
__global__ void __launch_bounds__(kVecBlock, 4)
    reduce_cols_vec(int64_t outer, int64_t len, int64_t inner, int64_t S, int64_t L,
                    const T* __restrict__ in, typename R::Out* __restrict__ out) {
  using State = typename R::State;
  static_assert(32 * V <= kVecBlock, "a thread per column of a tile in the last step");
  // State c of lane x of warp w at partial[9 X c + X w + x]: writes and reads conflict-free.
  __shared__ State partial[V * 9 * 32];
  const int X = blockDim.x, Y = blockDim.y;
  const int tid = threadIdx.y * X + threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t tile_cols = int64_t(X) * V;
  const int64_t tiles_per_slice = (inner + tile_cols - 1) / tile_cols;
  const int64_t tiles = outer * S * tiles_per_slice;
  const int64_t step = int64_t(Y) * inner;  // elements from one of a thread's rows to the next
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t os = t / tiles_per_slice, o = os / S;
    const int64_t col0 = (t % tiles_per_slice) * tile_cols, i = col0 + int64_t(threadIdx.x) * V;
    const int64_t begin = (os % S) * L, end = min(len, begin + L);
    State s[V];
#pragma unroll
    for (int c = 0; c < V; ++c) s[c] = R::init();
    int64_t j = begin + threadIdx.y;
    if (i < inner && j < end) {
      int64_t n = (end - j + Y - 1) / Y;  // this thread's rows: j, j + Y, ...
      const T* p = in + (o * len + j) * inner + i;
      for (; n >= kVecUnroll; n -= kVecUnroll, p += kVecUnroll * step, j += kVecUnroll * Y) {
        uint4 v[kVecUnroll];
#pragma unroll
        for (int u = 0; u < kVecUnroll; ++u)
          v[u] = __ldg(reinterpret_cast<const uint4*>(p + u * step));
#pragma unroll
        for (int u = 0; u < kVecUnroll; ++u) combine_vec<T, R, V>(s, v[u], j + u * Y);
      }
      uint4 v[kVecUnroll - 1] = {};  // the last n < kVecUnroll rows, loads first as well
#pragma unroll
      for (int u = 0; u < kVecUnroll - 1; ++u)
        if (u < n) v[u] = __ldg(reinterpret_cast<const uint4*>(p + u * step));
#pragma unroll
      for (int u = 0; u < kVecUnroll - 1; ++u)
        if (u < n) combine_vec<T, R, V>(s, v[u], j + u * Y);
    }
    // The 32 / X rows of a warp (lanes x, x + X, ...) by a butterfly; all lanes take part.
    for (int m = 16; m >= X; m >>= 1) {
#pragma unroll
      for (int c = 0; c < V; ++c) s[c] = R::combine(s[c], R::shfl(s[c], m));
    }
    if (lane < X) {
#pragma unroll
      for (int c = 0; c < V; ++c) partial[c * 9 * X + warp * X + lane] = s[c];
    }
    __syncthreads();
    if (tid < X * V) {  // thread k: state c = k / X of lane x = k % X, over the warps
      const int c = tid / X, x = tid % X;
      State r = partial[c * 9 * X + x];
      for (int w = 1; w < kVecWarps; ++w) r = R::combine(r, partial[c * 9 * X + w * X + x]);
      const int64_t col = col0 + int64_t(x) * V + c;
      if (col < inner) out[os * inner + col] = R::finish(r);
    }
    __syncthreads();  // partial[] is reused by the next tile
  }
}

int num_sms() { return std::max(1, cuda_current_device_info().sm_count); }

int clamp_grid(int64_t want) {
  return int(std::max<int64_t>(1, std::min<int64_t>(want, 16 * int64_t(num_sms()))));
}

// The vector width the column path uses for dtype and inner (see vec_width), 1 for none. The
// pointer's alignment is not known here; a misaligned input falls back to reduce_cols with the
// same slices.
int cols_vec(DType dtype, int64_t inner) {
  int v = 1;
  FG_DISPATCH_ALL(dtype, "reduce", [&] { v = vec_width<scalar_t>(); });
  return inner > 1 && inner % v == 0 ? v : 1;
}

// Slices of len for a split reduction: enough work items for about four per SM (rows, or
// column tiles of 32 or X V columns: vec is cols_vec()), each slice long enough to be worth a
// block (2048 elements of a row, kColsMinRows or kVecMinRows rows of a column tile). The vector
// path rounds down: 4 of its blocks fit an SM (__launch_bounds__), so its tiles run as one wave.
// 1: none.
int64_t split_slices(int64_t outer, int64_t len, int64_t inner, int vec) {
  int64_t items;
  if (inner == 1) {
    items = len <= 1024 ? (outer + 7) / 8 : outer;
  } else if (vec > 1) {
    const int64_t nvec = inner / vec, x = vec_lanes(nvec);
    items = outer * ((nvec + x - 1) / x);
  } else {
    items = outer * ((inner + kColsX - 1) / kColsX);
  }
  const int64_t want = 4 * int64_t(num_sms());
  if (items * 2 >= want) return 1;
  const int64_t most = len / (inner == 1 ? 2048 : vec > 1 ? kVecMinRows : kColsMinRows);
  const int64_t slices = vec > 1 ? want / items : (want + items - 1) / items;
  return std::max<int64_t>(1, std::min(slices, most));
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
    constexpr int V = vec_width<T>();
    if constexpr (V > 1) {
      if (inner % V == 0 && reinterpret_cast<uintptr_t>(in) % 16 == 0) {
        const int x = vec_lanes(inner / V);
        const int64_t tiles = outer * S * ((inner / V + x - 1) / x);
        reduce_cols_vec<T, R, V><<<clamp_grid(tiles), dim3(x, kVecBlock / x)>>>(
            outer, len, inner, S, L, in, out);
        FG_LAUNCH_CHECK();
        return;
      }
    }
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
  const int64_t S = split_slices(outer, len, inner, cols_vec(dtype, inner));
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
  const int64_t S = split_slices(outer, len, inner, cols_vec(dtype, inner));
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
