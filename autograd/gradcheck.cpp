// gradcheck: full Jacobians by backward passes and by central differences, compared entry by
// entry. Meant for small f64 inputs; cost is one backward per output element plus two
// forwards per input element.
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace fg {

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                          GradcheckOptions opt) {
  GradcheckResult res;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].requires_grad())
      FG_CHECK(inputs[i].dtype() == DType::f64, "gradcheck: input ", i, " is ",
               dtype_name(inputs[i].dtype()),
               "; finite differences need f64 inputs (convert with .to(DType::f64))");

  // Leaves we own, so that the caller's .grad is left alone.
  std::vector<Tensor> leaves;
  for (const Tensor& t : inputs) {
    if (!t.defined() || !t.requires_grad()) {
      leaves.push_back(t);
      continue;
    }
    Tensor l = ops::clone(detached_alias(t));
    l.set_requires_grad(true);
    leaves.push_back(l);
  }

  Tensor y = fn(leaves);
  FG_CHECK(y.defined() && is_floating(y.dtype()), "gradcheck: the function must return a floating tensor");
  int64_t n_out = y.numel();
  Device dev = y.device();

  // Analytic Jacobian rows: one backward per output element.
  std::vector<std::vector<std::vector<double>>> analytic(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (leaves[i].defined() && leaves[i].requires_grad())
      analytic[i].assign(size_t(n_out), std::vector<double>(size_t(leaves[i].numel()), 0.0));
  if (y.requires_grad()) {
    for (int64_t o = 0; o < n_out; ++o) {
      std::vector<double> onehot(size_t(n_out), 0.0);
      onehot[size_t(o)] = 1.0;
      Tensor g = ops::to_dtype(
          ops::to_device(from_vector<double>(onehot, y.shape(), TensorOptions(DType::f64)), dev),
          y.dtype());
      for (Tensor& l : leaves)
        if (l.defined() && l.requires_grad()) l.zero_grad();
      run_backward({y}, {g}, /*retain_graph=*/true);
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (analytic[i].empty()) continue;
        Tensor gr = leaves[i].grad();
        if (gr.defined()) analytic[i][size_t(o)] = gr.to_vector<double>();
      }
    }
  }

  // Numerical Jacobian columns by central differences, compared as they are made.
  NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (analytic[i].empty()) continue;
    Tensor base = detached_alias(leaves[i]);
    std::vector<double> x = base.to_vector<double>();
    for (size_t k = 0; k < x.size(); ++k) {
      auto eval = [&](double delta) {
        std::vector<double> xp = x;
        xp[k] += delta;
        std::vector<Tensor> args = leaves;
        args[i] = ops::to_device(from_vector<double>(xp, base.shape(), TensorOptions(DType::f64)),
                                 base.device());
        return fn(args).to_vector<double>();
      };
      std::vector<double> plus = eval(opt.eps), minus = eval(-opt.eps);
      for (int64_t o = 0; o < n_out; ++o) {
        double num = (plus[size_t(o)] - minus[size_t(o)]) / (2 * opt.eps);
        double ana = analytic[i][size_t(o)][k];
        double err = std::fabs(ana - num);
        res.max_abs_error = std::max(res.max_abs_error, err);
        res.max_rel_error = std::max(res.max_rel_error, err / std::max(std::fabs(num), 1e-12));
        if (!(err <= opt.atol + opt.rtol * std::fabs(num)) && res.ok) {
          res.ok = false;
          res.message = str("gradcheck failed for input ", i, " element ", k, ", output ", o,
                            ": analytic ", ana, " vs numeric ", num, " (atol ", opt.atol,
                            ", rtol ", opt.rtol, ")");
        }
      }
    }
  }
  if (res.ok)
    res.message = str("ok (max abs error ", res.max_abs_error, ", max rel error ",
                      res.max_rel_error, ")");
  return res;
}

}  // namespace fg
