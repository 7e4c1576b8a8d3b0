// CUDA binary elementwise kernels with a scalar operand: out = op(a, s), or op(s, a). Functors
// as in elementwise.cu; the launcher picks the kernel form.
#include <type_traits>

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
  FG_CHECK(is_floating(dtype) || binary_supports_int(op), "binary_scalar ", binary_op_name(op),
           ": dtype ", dtype_name(dtype), " is not supported (floating only); convert with .to(f32)");
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "binary_scalar", [&] {
    FG_DISPATCH_BINARY_OP(op, [&] {
      if constexpr (std::is_floating_point_v<compute_t<scalar_t>> || binary_supports_int(kOp))
        launch_elementwise(n, idx, BinaryScalarFn<scalar_t, kOp>{compute_t<scalar_t>(s), scalar_first},
                           static_cast<scalar_t*>(out), static_cast<const scalar_t*>(a));
    });
  });
}

}  // namespace fg::cuda
