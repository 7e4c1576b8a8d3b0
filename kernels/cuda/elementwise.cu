// CUDA elementwise kernels: unary and where over strided operands (binary ones are in
// elementwise_binary.cu).
//
// Each op is a small functor on raw element values that applies the per-element math of
// kernels/common/elementwise_math.h, the same code the CPU reference runs, with the op as a
// template parameter so the inner loop has no switch in it. kernels/cuda/elementwise_launch.cuh
// picks the kernel form (128-bit vectorised, 32-bit strided or 64-bit strided) from the
// operands' layout.
#include "kernels/common/elementwise_math.h"
#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {
namespace {

template <typename T, UnaryOp OP>
struct UnaryFn {
  __device__ T operator()(T x) const {
    using C = compute_t<T>;
    return store_as<T>(unary_apply<OP, C>(load_as<C>(x)));
  }
};

template <typename T, typename CondT>
struct WhereFn {
  __device__ T operator()(CondT c, T a, T b) const {
    return load_as<compute_t<CondT>>(c) != compute_t<CondT>(0) ? a : b;
  }
};

}  // namespace

void unary(UnaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx, const void* in,
           void* out) {
  check_elementwise_dtype("unary", unary_op_name(op), unary_supports_int(op), dtype);
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "unary", [&] {
    FG_DISPATCH_UNARY_OP(op, [&] {
      // (Integer kernels only for the ops that have them: the check above threw for the rest.)
      if constexpr (unary_has_kernel<scalar_t>(kOp))
        launch_elementwise(n, idx, UnaryFn<scalar_t, kOp>{}, static_cast<scalar_t*>(out),
                           static_cast<const scalar_t*>(in));
    });
  });
}

void where(DType dtype, DType cond_dtype, int64_t n, const StridedIndexer<4>& idx,
           const void* cond, const void* a, const void* b, void* out) {
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "where", [&] {
    using value_t = scalar_t;
    FG_DISPATCH_ALL(cond_dtype, "where (condition)", [&] {
      launch_elementwise(n, idx, WhereFn<value_t, scalar_t>{}, static_cast<value_t*>(out),
                         static_cast<const scalar_t*>(cond), static_cast<const value_t*>(a),
                         static_cast<const value_t*>(b));
    });
  });
}

}  // namespace fg::cuda
