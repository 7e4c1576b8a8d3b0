// CUDA binary elementwise kernels with a scalar operand: out = op(a, s), or op(s, a). Functors
// as in elementwise.cu; the launcher picks the kernel form.
#include "kernels/common/elementwise_math.h"
#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {
namespace {

template <typename T, BinaryOp OP>
struct BinaryScalarFn {
  compute_t<T> s;
  bool scalar_first;
  __device__ T operator()(T a) const {
    using C = compute_t<T>;
    C x = load_as<C>(a);
    return store_as<T>(scalar_first ? binary_apply<OP, C>(s, x) : binary_apply<OP, C>(x, s));
  }
};

}  // namespace

void binary_scalar(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx,
                   const void* a, double s, bool scalar_first, void* out) {
  check_elementwise_dtype("binary_scalar", binary_op_name(op), binary_supports_int(op), dtype);
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary_scalar", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      if constexpr (binary_has_kernel<scalar_t>(kOp))
        launch_elementwise(n, idx, BinaryScalarFn<scalar_t, kOp>{compute_t<scalar_t>(s), scalar_first},
                           static_cast<scalar_t*>(out), static_cast<const scalar_t*>(a));
    });
  });
}

}  // namespace fg::cuda
