// gradcheck: compares the analytic gradients of a function with central finite differences.
//
// As torch.autograd.gradcheck: the inputs should be f64 tensors that require grad (on any
// device). The function maps the inputs to one tensor of any shape; gradcheck builds the full
// Jacobian both ways (one backward per output element, two forwards per input element) and
// compares them entry by entry: |analytic - numeric| <= atol + rtol * |numeric|.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace fg {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0;  // largest |analytic - numeric| over all Jacobian entries
  double max_rel_error = 0;  // largest |analytic - numeric| / max(|numeric|, 1e-12)
  std::string message;       // names the first failing input and entry, or "ok"
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          GradcheckOptions options = {});

}  // namespace fg
