// The raw optimizer ops: the fused AdamW update of one parameter or of many at once, in place,
// and the multi-tensor sum of squares of gradient clipping. They check that each parameter, its
// gradient, its moments and (for 16-bit parameters) its fp32 master copy fit together, and run
// kernels/optim.h's kernels on their device.
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

// The checks of adamw_; returns whether the parameter is 16-bit.
bool check_adamw_slot(const Tensor& param, const Tensor& master, const Tensor& grad,
                      const Tensor& exp_avg, const Tensor& exp_avg_sq) {
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
  return half;
}

void bump_versions(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined()) t->unsafe_impl()->version++;
}

}  // namespace

void adamw_(Tensor& param, Tensor& master, const Tensor& grad, Tensor& exp_avg,
            Tensor& exp_avg_sq, const AdamWArgs& args) {
  const bool half = check_adamw_slot(param, master, grad, exp_avg, exp_avg_sq);
  Tensor g = contiguous(grad);
  FG_CALL_KERNEL(param.device(), adamw, param.dtype(), param.numel(), param.data_ptr(),
                 half ? master.data<float>() : nullptr, g.data_ptr(), exp_avg.data<float>(),
                 exp_avg_sq.data<float>(), args);
  bump_versions({&param, &master, &exp_avg, &exp_avg_sq});
}

void adamw_multi_(std::vector<AdamWSlot>& slots, const AdamWArgs& args) {
  if (slots.empty()) return;
  const Tensor& first = slots[0].param;
  std::vector<Tensor> grads;  // contiguous gradients, alive until the kernel is queued
  std::vector<AdamWTensor> table;
  for (AdamWSlot& s : slots) {
    const bool half = check_adamw_slot(s.param, s.master, s.grad, s.exp_avg, s.exp_avg_sq);
    FG_CHECK(s.param.dtype() == first.dtype() && s.param.device() == first.device(),
             "adamw_multi_: every parameter must share the first one's dtype and device (",
             dtype_name(first.dtype()), " on ", first.device().str(), "), got ",
             dtype_name(s.param.dtype()), " on ", s.param.device().str(),
             "; group the parameters by dtype and device");
    grads.push_back(contiguous(s.grad));
    table.push_back({s.param.data_ptr(), half ? s.master.data<float>() : nullptr,
                     grads.back().data_ptr(), s.exp_avg.data<float>(), s.exp_avg_sq.data<float>(),
                     s.param.numel()});
  }
  FG_CALL_KERNEL(first.device(), adamw_multi, first.dtype(), int(table.size()), table.data(),
                 args);
  for (AdamWSlot& s : slots) bump_versions({&s.param, &s.master, &s.exp_avg, &s.exp_avg_sq});
}

Tensor sum_squares(const std::vector<Tensor>& ts) {
  FG_CHECK(!ts.empty(), "sum_squares: no tensors given");
  for (const Tensor& t : ts) {
    FG_CHECK(t.defined(), "sum_squares: a tensor is undefined");
    check_floating("sum_squares", t);
  }
  check_same_device("sum_squares", ts);
  check_same_dtype("sum_squares", ts);
  std::vector<Tensor> keep;
  std::vector<SquaresTensor> table;
  for (const Tensor& t : ts) {
    keep.push_back(contiguous(t));
    table.push_back({keep.back().data_ptr(), t.numel()});
  }
  const Device dev = ts[0].device();
  Tensor ws = workspace(dev, FG_CALL_KERNEL(dev, sum_squares_workspace, int(table.size()),
                                            table.data()));
  Tensor out = empty({}, TensorOptions(DType::f64).device(dev));
  FG_CALL_KERNEL(dev, sum_squares, ts[0].dtype(), int(table.size()), table.data(),
                 out.data<double>(), ws.defined() ? ws.data_ptr() : nullptr);
  return out;
}

}  // namespace fg::ops
