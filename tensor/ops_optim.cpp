// The raw optimizer op: the fused AdamW update of one parameter, in place. It checks that the
// parameter, its gradient, its moments and (for 16-bit parameters) its fp32 master copy fit
// together, and runs kernels/optim.h's kernel on their device.
#include "tensor/ops.h"

namespace fg::ops {

namespace {

constexpr const char* kAdamW = "adamw_";

// An fp32 state tensor (a moment or the master copy) of the parameter's shape and device.
void check_fp32_state(const Tensor& t, const Tensor& param, const char* which) {
  FG_CHECK(t.defined() && t.dtype() == DType::f32 && t.shape() == param.shape() &&
               t.device() == param.device() && t.is_contiguous(),
           kAdamW, ": ", which, " must be a contiguous f32 tensor of the parameter's shape ",
           shape_str(param.shape()), " on ", param.device().str(), ", got ",
           t.defined() ? str(dtype_name(t.dtype()), " ", shape_str(t.shape()), " on ",
                             t.device().str(), t.is_contiguous() ? "" : " (not contiguous)")
                       : std::string("an undefined tensor"));
}

}  // namespace

void adamw_(Tensor& param, Tensor& master, const Tensor& grad, Tensor& exp_avg,
            Tensor& exp_avg_sq, const AdamWArgs& args) {
  FG_CHECK(param.defined() && param.is_contiguous(), kAdamW,
           ": the parameter must be a defined contiguous tensor");
  const bool half = param.dtype() == DType::bf16 || param.dtype() == DType::f16;
  FG_CHECK(half || param.dtype() == DType::f32, kAdamW, ": parameter dtype ",
           dtype_name(param.dtype()), " is not supported; use f32, or bf16/f16 with an f32 master copy");
  FG_CHECK(grad.defined() && grad.dtype() == param.dtype() && grad.shape() == param.shape() &&
               grad.device() == param.device(),
           kAdamW, ": the gradient (",
           grad.defined() ? str(dtype_name(grad.dtype()), " ", shape_str(grad.shape()), " on ",
                                grad.device().str())
                          : std::string("undefined"),
           ") must match the parameter (", dtype_name(param.dtype()), " ",
           shape_str(param.shape()), " on ", param.device().str(), ")");
  check_fp32_state(exp_avg, param, "exp_avg");
  check_fp32_state(exp_avg_sq, param, "exp_avg_sq");
  if (half)
    check_fp32_state(master, param, "the master copy of a 16-bit parameter");
  else
    FG_CHECK(!master.defined(), kAdamW,
             ": an f32 parameter is its own master copy; pass an undefined master tensor");
  Tensor g = contiguous(grad);
  FG_CALL_KERNEL(param.device(), adamw, param.dtype(), param.numel(), param.data_ptr(),
                 half ? master.data<float>() : nullptr, g.data_ptr(), exp_avg.data<float>(),
                 exp_avg_sq.data<float>(), args);
  for (Tensor* t : {&param, &master, &exp_avg, &exp_avg_sq})
    if (t->defined()) t->unsafe_impl()->version++;
}

}  // namespace fg::ops
