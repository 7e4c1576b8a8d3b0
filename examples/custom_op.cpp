// A new differentiable op written from scratch: RMSNorm (Zhang and Sennrich, 2019), the
// normalisation LLaMA uses in place of LayerNorm, then checked
//   1. against fp64 central differences over its whole Jacobian (fg::gradcheck), and
//   2. against the same function composed of existing differentiable ops, whose backward
//      autograd derives by itself: outputs and gradients must agree to rounding.
//
//   ./build/examples/custom_op          on the CPU
//   ./build/examples/custom_op cuda     on the GPU
//
// An op is two pieces of raw ops (tensor/ops.h, which record no graph): a forward, and a
// backward that maps the gradient of the output to the gradients of the inputs. record()
// (autograd/node.h) joins them: when an input requires grad, it adds a node to the graph that
// keeps what the backward needs. The maths, over the last dim of size C:
//
//   y = x * r * w                      r = 1 / sqrt(mean(x^2) + eps), one per row
//   dL/dw = sum over rows of g * x * r        (g = dL/dy)
//   dL/dx = r * (g*w - x * r^2 * mean(g*w * x))
#include <cmath>
#include <cstdio>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"

using namespace fg;

// x [..., C], weight [C] -> [..., C].
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6) {
  // The forward: r keeps its reduced dim (size 1) so that it broadcasts over the row.
  const Tensor r =
      ops::unary(UnaryOp::rsqrt, ops::add_scalar(ops::mean(ops::mul(x, x), {-1}, true), eps));
  const Tensor y = ops::mul(ops::mul(x, r), weight);

  // The backward keeps x, the weight and r: one float per row beyond the inputs.
  auto backward = [](const std::vector<Tensor>& grads, const std::vector<Tensor>& saved,
                     const std::vector<bool>& needs) {
    const Tensor &g = grads[0], &x = saved[0], &w = saved[1], &r = saved[2];
    Tensor dx, dw;  // left undefined for an input that needs no gradient
    if (needs[0]) {
      const Tensor gw = ops::mul(g, w);
      const Tensor m = ops::mean(ops::mul(gw, x), {-1}, true);
      dx = ops::mul(r, ops::sub(gw, ops::mul(ops::mul(x, ops::mul(r, r)), m)));
    }
    if (needs[1]) dw = ops::sum_to(ops::mul(g, ops::mul(x, r)), w.shape());  // undo the broadcast
    return std::vector<Tensor>{dx, dw};
  };
  return record("RmsNormBackward", {x, weight}, y, {x, weight, r}, backward);
}

// The same function from differentiable ops: autograd records a node per op.
Tensor rms_norm_composed(const Tensor& x, const Tensor& weight, double eps = 1e-6) {
  return x * rsqrt(mean(x * x, {-1}, true) + eps) * weight;
}

namespace {

// max |a - b| / max |b|, on the host in double.
double max_rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double diff = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) diff = std::fmax(diff, std::fabs(x[i] - y[i]));
  for (double v : y) ref = std::fmax(ref, std::fabs(v));
  return diff / ref;
}

}  // namespace

int main(int argc, char** argv) {
  const Device device = device_from_string(argc > 1 ? argv[1] : "cpu");
  bool ok = true;

  // 1. The gradient check, in fp64 on small inputs (one backward per output element).
  Generator gen(11);
  const TensorOptions f64 = TensorOptions(DType::f64).device(device);
  Tensor x = randn({3, 4, 8}, f64, &gen).set_requires_grad(true);
  Tensor w = (randn({8}, f64, &gen) * 0.5 + 1.0).set_requires_grad(true);
  const GradcheckResult check =
      gradcheck([](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }, {x, w});
  std::printf("gradcheck of rms_norm on %s (fp64, full Jacobian): max abs error %.2e, max rel "
              "error %.2e: %s\n",
              device.str().c_str(), check.max_abs_error, check.max_rel_error,
              check.ok ? "PASS" : check.message.c_str());
  ok = ok && check.ok;

  // 2. Against the composition, in fp32 on a larger input.
  const TensorOptions f32 = TensorOptions(DType::f32).device(device);
  const Tensor x0 = randn({16, 64, 256}, f32, &gen), w0 = randn({256}, f32, &gen);
  const Tensor g = randn({16, 64, 256}, f32, &gen);  // the gradient flowing into y
  auto run = [&](const char* name, Tensor (*op)(const Tensor&, const Tensor&, double)) {
    Tensor xi = x0.detach().set_requires_grad(true), wi = w0.detach().set_requires_grad(true);
    Tensor y = op(xi, wi, 1e-6);
    const size_t saved = saved_bytes_for_backward(y);
    y.backward(g);
    std::printf("  %-17s keeps %s for backward\n", name, format_bytes(saved).c_str());
    return std::vector<Tensor>{y.detach(), xi.grad(), wi.grad()};
  };
  std::printf("rms_norm against the composed ops (fp32, x [16, 64, 256]):\n");
  const std::vector<Tensor> ours = run("rms_norm", rms_norm),
                                composed = run("rms_norm_composed", rms_norm_composed);
  const char* names[] = {"y", "dx", "dw"};
  for (int i = 0; i < 3; ++i) {
    const double err = max_rel_err(ours[size_t(i)], composed[size_t(i)]);
    std::printf("  %-2s max relative error %.2e\n", names[i], err);
    ok = ok && err < 1e-5;
  }

  if (!ok) {
    std::fprintf(stderr, "error: rms_norm failed a check (see above)\n");
    return 1;
  }
  return 0;
}
