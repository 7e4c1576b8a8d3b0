// CUDA elementwise kernels: unary, binary, binary-with-scalar and where over strided operands.
//
// One templated grid-stride kernel per (dtype, op): each thread walks linear output indices,
// asks the StridedIndexer for the operands' offsets (a plain copy of the index when every
// operand is contiguous) and applies the per-element math of kernels/common/elementwise_math.h,
// the same code the CPU reference runs. The op is a template parameter so the inner loop has
// no switch in it.
#include <algorithm>

#include "kernels/common/elementwise_math.h"
#include "core/cuda_check.h"
#include "kernels/kernels.h"

namespace fg::cuda {
namespace {

constexpr int kThreads = 256;

// Enough blocks to fill the GPU several times over; the grid-stride loop covers the rest.
int grid_for(int64_t n) {
  static int max_blocks = [] {
    int dev = 0, sms = 0;
    FG_CUDA_CHECK(cudaGetDevice(&dev));
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return std::max(1, sms) * 32;
  }();
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return int(std::max<int64_t>(1, std::min<int64_t>(blocks, max_blocks)));
}

template <typename T, UnaryOp OP>
__global__ void unary_kernel(int64_t n, StridedIndexer<2> idx, const T* in,
                             T* out) {
  using C = compute_t<T>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    idx.offsets(i, off);
    out[off[0]] = store_as<T>(unary_apply<OP, C>(load_as<C>(in[off[1]])));
  }
}

template <typename T, BinaryOp OP>
__global__ void binary_kernel(int64_t n, StridedIndexer<3> idx, const T* a,
                              const T* b, T* out) {
  using C = compute_t<T>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    idx.offsets(i, off);
    out[off[0]] = store_as<T>(binary_apply<OP, C>(load_as<C>(a[off[1]]), load_as<C>(b[off[2]])));
  }
}

template <typename T, BinaryOp OP>
__global__ void binary_scalar_kernel(int64_t n, StridedIndexer<2> idx, const T* a,
                                     compute_t<T> s, bool scalar_first, T* out) {
  using C = compute_t<T>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    idx.offsets(i, off);
    C x = load_as<C>(a[off[1]]);
    C r = scalar_first ? binary_apply<OP, C>(s, x) : binary_apply<OP, C>(x, s);
    out[off[0]] = store_as<T>(r);
  }
}

template <typename T, typename CondT>
__global__ void where_kernel(int64_t n, StridedIndexer<4> idx, const CondT* cond,
                             const T* a, const T* b,
                             T* out) {
  using CC = compute_t<CondT>;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[4];
    idx.offsets(i, off);
    bool take_a = load_as<CC>(cond[off[1]]) != CC(0);
    out[off[0]] = take_a ? a[off[2]] : b[off[3]];
  }
}

}  // namespace

void unary(UnaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx, const void* in,
           void* out) {
  FG_CHECK(is_floating(dtype) || unary_supports_int(op), "unary ", unary_op_name(op),
           ": dtype ", dtype_name(dtype), " is not supported (floating only); convert with .to(f32)");
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "unary", [&] {
    FG_DISPATCH_UNARY_OP(op, [&] {
      unary_kernel<scalar_t, kOp><<<grid_for(n), kThreads>>>(
          n, idx, static_cast<const scalar_t*>(in), static_cast<scalar_t*>(out));
      FG_LAUNCH_CHECK();
    });
  });
}

void binary(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<3>& idx, const void* a,
            const void* b, void* out) {
  FG_CHECK(is_floating(dtype) || binary_supports_int(op), "binary ", binary_op_name(op),
           ": dtype ", dtype_name(dtype), " is not supported (floating only); convert with .to(f32)");
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      binary_kernel<scalar_t, kOp><<<grid_for(n), kThreads>>>(
          n, idx, static_cast<const scalar_t*>(a), static_cast<const scalar_t*>(b),
          static_cast<scalar_t*>(out));
      FG_LAUNCH_CHECK();
    });
  });
}

void binary_scalar(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx,
                   const void* a, double s, bool scalar_first, void* out) {
  FG_CHECK(is_floating(dtype) || binary_supports_int(op), "binary_scalar ", binary_op_name(op),
           ": dtype ", dtype_name(dtype), " is not supported (floating only); convert with .to(f32)");
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary_scalar", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      binary_scalar_kernel<scalar_t, kOp><<<grid_for(n), kThreads>>>(
          n, idx, static_cast<const scalar_t*>(a), compute_t<scalar_t>(s), scalar_first,
          static_cast<scalar_t*>(out));
      FG_LAUNCH_CHECK();
    });
  });
}

void where(DType dtype, DType cond_dtype, int64_t n, const StridedIndexer<4>& idx,
           const void* cond, const void* a, const void* b, void* out) {
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "where", [&] {
    using value_t = scalar_t;
    FG_DISPATCH_ALL(cond_dtype, "where (condition)", [&] {
      where_kernel<value_t, scalar_t><<<grid_for(n), kThreads>>>(
          n, idx, static_cast<const scalar_t*>(cond), static_cast<const value_t*>(a),
          static_cast<const value_t*>(b), static_cast<value_t*>(out));
      FG_LAUNCH_CHECK();
    });
  });
}

}  // namespace fg::cuda
