// The one launcher behind every CUDA elementwise kernel: unary, binary, binary-with-scalar,
// where, copy with dtype conversion, and fill.
//
// A caller passes the element count, the operands' StridedIndexer (output first; dims already
// merged by make_indexer), a functor computing one output element from one element of each
// input, and the pointers. The launcher picks the fastest of three forms of one kernel:
//
//   vectorised   every operand is unit-stride along the last dim, that dim and every other
//                stride are multiples of V, and the pointers are aligned to V elements: each
//                thread moves V elements (16 bytes of the widest operand) per operand with
//                one 128-bit access, and walks units with 32-bit index arithmetic. Contiguous
//                tensors are one such dim; a bias broadcast along rows ([rows, C] + [C]) is two.
//   32-bit       any strides whose offsets fit in 31 bits: element by element, but with 32-bit
//                division for the offsets (several times cheaper than 64-bit).
//   64-bit       everything else (more than 2^31 elements or offsets).
//
// A contiguous size that is not a multiple of V runs its last few elements through a second
// small launch. The per-element math is the functor's, so all three forms give the same bits.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "kernels/common/strided.h"

namespace fg::cuda {

template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

constexpr int kElementwiseThreads = 256;

// Blocks enough for two full waves of the GPU; the grid-stride loop covers the rest.
inline int elementwise_grid(int64_t units) {
  const int64_t max_blocks = 16 * int64_t(std::max(1, cuda_current_device_info().sm_count));
  int64_t blocks = (units + kElementwiseThreads - 1) / kElementwiseThreads;
  return int(std::max<int64_t>(1, std::min<int64_t>(blocks, max_blocks)));
}

template <typename I, int NARGS>
__device__ __forceinline__ void unit_offsets(const StridedIndexer<NARGS>& idx, I linear, I* off) {
  if (idx.contiguous) {
#pragma unroll
    for (int a = 0; a < NARGS; ++a) off[a] = linear;
    return;
  }
#pragma unroll
  for (int a = 0; a < NARGS; ++a) off[a] = 0;
  for (int d = idx.ndim - 1; d >= 0; --d) {
    const I size = I(idx.sizes[d]);
    const I i = linear % size;
    linear /= size;
#pragma unroll
    for (int a = 0; a < NARGS; ++a) off[a] += i * I(idx.strides[a][d]);
  }
}

// V output elements from V elements of each input, loaded whole (one access per operand).
template <int V, typename Out, typename Op, typename... VIn>
__device__ __forceinline__ Vec<Out, V> apply_units(const Op& op, const VIn... in) {
  Vec<Out, V> r;
#pragma unroll
  for (int j = 0; j < V; ++j) r.v[j] = op(in.v[j]...);
  return r;
}

template <typename I, int V, typename Op, typename Out, typename... In, size_t... Is>
__device__ __forceinline__ void elementwise_unit(const StridedIndexer<sizeof...(In) + 1>& idx,
                                                 I u, const Op& op, Out* out,
                                                 std::index_sequence<Is...>, const In*... in) {
  I off[sizeof...(In) + 1];
  unit_offsets(idx, u, off);
  reinterpret_cast<Vec<Out, V>*>(out)[off[0]] =
      apply_units<V, Out>(op, reinterpret_cast<const Vec<In, V>*>(in)[off[Is + 1]]...);
}

template <typename I, int V, typename Op, typename Out, typename... In>
__global__ void __launch_bounds__(kElementwiseThreads)
    elementwise_kernel(I units, StridedIndexer<sizeof...(In) + 1> idx, Op op, Out* out,
                       const In*... in) {
  for (I u = I(blockIdx.x) * blockDim.x + threadIdx.x; u < units; u += I(gridDim.x) * blockDim.x)
    elementwise_unit<I, V>(idx, u, op, out, std::index_sequence_for<In...>{}, in...);
}

template <typename T>
constexpr size_t max_size_of() { return sizeof(T); }
template <typename T, typename U, typename... R>
constexpr size_t max_size_of() { return std::max(sizeof(T), max_size_of<U, R...>()); }

// Can the operands be walked in units of V elements? If so, rewrites idx in units.
template <int V, int NARGS>
bool to_units(StridedIndexer<NARGS>& idx, const void* const* ptrs, const size_t* align) {
  if (idx.ndim == 0) return false;
  const int last = idx.ndim - 1;
  if (idx.sizes[last] % V != 0) return false;
  for (int a = 0; a < NARGS; ++a) {
    if (reinterpret_cast<uintptr_t>(ptrs[a]) % align[a] != 0) return false;
    if (idx.strides[a][last] != 1) return false;
    for (int d = 0; d < last; ++d)
      if (idx.strides[a][d] % V != 0) return false;
  }
  idx.sizes[last] /= V;
  for (int a = 0; a < NARGS; ++a)
    for (int d = 0; d < last; ++d) idx.strides[a][d] /= V;
  return true;
}

// True when every offset, and the unit count, fits in 31 bits (strides are never negative).
template <int NARGS>
bool fits_32bit(const StridedIndexer<NARGS>& idx, int64_t units) {
  constexpr int64_t kMax = int64_t(1) << 31;
  if (units >= kMax) return false;
  for (int a = 0; a < NARGS; ++a) {
    int64_t reach = 0;
    for (int d = 0; d < idx.ndim; ++d) {
      if (idx.strides[a][d] < 0) return false;
      reach += (idx.sizes[d] - 1) * idx.strides[a][d];
    }
    if (reach >= kMax) return false;
  }
  return true;
}

template <typename I, int V, typename Op, typename Out, typename... In>
void launch_form(int64_t units, const StridedIndexer<sizeof...(In) + 1>& idx, const Op& op,
                 Out* out, const In*... in) {
  elementwise_kernel<I, V><<<elementwise_grid(units), kElementwiseThreads>>>(I(units), idx, op,
                                                                             out, in...);
  FG_LAUNCH_CHECK();
}

// out[off0] = op(in[off1], in[off2], ...) for every element, offsets from idx.
template <typename Op, typename Out, typename... In>
void launch_elementwise(int64_t n, StridedIndexer<sizeof...(In) + 1> idx, const Op& op, Out* out,
                        const In*... in) {
  constexpr int NARGS = sizeof...(In) + 1;
  constexpr int V = int(16 / max_size_of<Out, In...>());
  if (n <= 0) return;
  if (idx.contiguous) {  // one dim of n elements; a tail of n % V elements runs on its own
    idx.ndim = 1;
    idx.sizes[0] = n;
    for (int a = 0; a < NARGS; ++a) idx.strides[a][0] = 1;
    const int64_t tail = n % V, body = n - tail;
    if (tail != 0) {
      StridedIndexer<NARGS> t = idx;
      t.sizes[0] = tail;
      launch_form<int64_t, 1>(tail, t, op, out + body, (in + body)...);
      if (body == 0) return;
      idx.sizes[0] = body;
      n = body;
    }
  }
  const void* ptrs[NARGS] = {out, in...};
  const size_t align[NARGS] = {sizeof(Out) * V, (sizeof(In) * V)...};
  StridedIndexer<NARGS> units = idx;
  if (V > 1 && to_units<V>(units, ptrs, align) && fits_32bit(units, n / V)) {
    launch_form<uint32_t, V>(n / V, units, op, out, in...);
  } else if (fits_32bit(idx, n)) {
    launch_form<uint32_t, 1>(n, idx, op, out, in...);
  } else {
    launch_form<int64_t, 1>(n, idx, op, out, in...);
  }
}

}  // namespace fg::cuda
