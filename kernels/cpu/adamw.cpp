// The fused AdamW update on the CPU (the reference for the CUDA kernel).
#include "kernels/optim.h"

#include <type_traits>

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

}  // namespace fg::cpu
