// CUDA binary elementwise kernels: two tensors, numpy broadcasting (zero strides). Functors as
// in elementwise.cu; the launcher picks the kernel form.
#include "kernels/common/elementwise_math.h"
#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {
namespace {

template <typename T, BinaryOp OP>
struct BinaryFn {
  __device__ T operator()(T a, T b) const {
    using C = compute_t<T>;
    return store_as<T>(binary_apply<OP, C>(load_as<C>(a), load_as<C>(b)));
  }
};

}  // namespace

void binary(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<3>& idx, const void* a,
            const void* b, void* out) {
  check_elementwise_dtype("binary", binary_op_name(op), binary_supports_int(op), dtype);
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      if constexpr (binary_has_kernel<scalar_t>(kOp))
        launch_elementwise(n, idx, BinaryFn<scalar_t, kOp>{}, static_cast<scalar_t*>(out),
                           static_cast<const scalar_t*>(a), static_cast<const scalar_t*>(b));
    });
  });
}

}  // namespace fg::cuda
