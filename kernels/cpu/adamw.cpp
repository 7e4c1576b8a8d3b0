// The fused AdamW update and the multi-tensor sum of squares (for gradient-norm clipping) on
// the CPU: the references for the CUDA kernels.
#include "kernels/optim.h"

#include <algorithm>
#include <type_traits>

#include "core/dispatch.h"
#include "core/error.h"

namespace fg::cpu {

void adamw(DType param_dtype, int64_t n, void* param, float* master, const void* grad,
           float* exp_avg, float* exp_avg_sq, const AdamWArgs& args) {
  if (param_dtype == DType::f32) {
    FG_CHECK(master == nullptr, "adamw: fp32 parameters are their own master copy");
    float* p = static_cast<float*>(param);
    const float* g = static_cast<const float*>(grad);
    for (int64_t i = 0; i < n; ++i) adamw_update(p[i], g[i], exp_avg[i], exp_avg_sq[i], args);
    return;
  }
  auto half_update = [&](auto* p, const auto* g) {
    using T = std::remove_pointer_t<decltype(p)>;
    FG_CHECK(master != nullptr, "adamw: ", dtype_name(param_dtype),
             " parameters need an fp32 master copy");
    for (int64_t i = 0; i < n; ++i) {
      adamw_update(master[i], float(g[i]), exp_avg[i], exp_avg_sq[i], args);
      p[i] = T(master[i]);
    }
  };
  switch (param_dtype) {
    case DType::bf16:
      half_update(static_cast<bfloat16*>(param), static_cast<const bfloat16*>(grad));
      break;
    case DType::f16:
      half_update(static_cast<float16*>(param), static_cast<const float16*>(grad));
      break;
    default:
      throw Error(str("adamw: parameter dtype ", dtype_name(param_dtype),
                      " is not supported (use f32, or bf16/f16 with an fp32 master copy)"));
  }
}

void adamw_multi(DType param_dtype, int count, const AdamWTensor* tensors, const AdamWArgs& args) {
  for (int t = 0; t < count; ++t) {
    const AdamWTensor& e = tensors[t];
    adamw(param_dtype, e.n, e.param, e.master, e.grad, e.exp_avg, e.exp_avg_sq, args);
  }
}

size_t sum_squares_workspace(int, const SquaresTensor*) { return 0; }

void sum_squares(DType dtype, int count, const SquaresTensor* tensors, double* out, void*) {
  double total = 0;
  FG_DISPATCH_FLOAT(dtype, "sum_squares", [&] {
    for (int t = 0; t < count; ++t) {
      const scalar_t* p = static_cast<const scalar_t*>(tensors[t].data);
      for (int64_t c = 0; c < tensors[t].n; c += kMultiTensorChunk) {
        const int64_t end = std::min(tensors[t].n, c + kMultiTensorChunk);
        using Acc = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
        Acc chunk = 0;
        for (int64_t i = c; i < end; ++i) {
          const Acc v = Acc(p[i]);
          chunk += v * v;
        }
        total += double(chunk);
      }
    }
  });
  *out = total;
}

}  // namespace fg::cpu
