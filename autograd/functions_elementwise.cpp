// The differentiable elementwise ops, where/masked_fill, comparisons, the arithmetic operators,
// and the reductions (sum, mean, max, argmax), with their backward formulas.
//
// Each forward is one raw op of tensor/ops.h; each backward is written with raw ops as well
// (it runs with grad mode off). Broadcasting ops sum their gradients back to each input's shape
// with ops::sum_to, the adjoint of broadcasting. Formulas that can reuse the output (exp,
// sqrt, tanh, sigmoid, ...) save the output rather than the input.
#include <algorithm>
#include <cmath>

#include "autograd/functions.h"

namespace fg {
namespace {

using Grads = std::vector<Tensor>;
using Saved = std::vector<Tensor>;
using Needs = std::vector<bool>;

// A 0-d tensor of value v with t's dtype and device (broadcasts anywhere, costs nothing).
Tensor scalar_like(const Tensor& t, double v) {
  return scalar_tensor(v, TensorOptions(t.dtype()).device(t.device()));
}

// A 1/0 comparison in the operands' dtype, so it multiplies gradients directly.
Tensor cmp(BinaryOp op, const Tensor& a, const Tensor& b) { return ops::binary(op, a, b); }

// Which dims a reduction covers (all when dims is empty); negative dims wrap, repeats throw.
std::vector<bool> reduced_dims(const Tensor& t, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(size_t(t.dim()), dims.empty());
  for (int64_t d : dims) {
    int64_t w = t.wrap_dim(d, op);
    FG_CHECK(!mask[size_t(w)], op, ": dim ", d, " is repeated in dims for shape ",
             shape_str(t.shape()));
    mask[size_t(w)] = true;
  }
  return mask;
}

// g reshaped to `keep` (same numel, size-1 dims added). A 0-d g broadcasts instead, which
// needs no view-stride logic at all.
Tensor to_keepdim(const Tensor& g, const Shape& keep) {
  return g.dim() == 0 ? ops::expand(g, keep) : ops::reshape(g, keep);
}

// The gradient of a reduction's output, spread back over the input: reshape to the keepdim
// shape (size 1 where reduced), broadcast to the input shape, materialise.
Tensor spread_grad(const Tensor& g, const Shape& in_shape, const std::vector<bool>& mask) {
  Shape keep = in_shape;
  for (size_t d = 0; d < keep.size(); ++d)
    if (mask[d]) keep[d] = 1;
  return ops::contiguous(ops::expand(to_keepdim(g, keep), in_shape));
}

}  // namespace

// ---- binary arithmetic (broadcasting) ----

Tensor add(const Tensor& a, const Tensor& b) {
  Shape sa = a.shape(), sb = b.shape();
  return record("AddBackward", {a, b}, ops::add(a, b), {},
                [sa, sb](const Grads& g, const Saved&, const Needs& needs) {
                  return Grads{needs[0] ? ops::sum_to(g[0], sa) : Tensor(),
                               needs[1] ? ops::sum_to(g[0], sb) : Tensor()};
                });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Shape sa = a.shape(), sb = b.shape();
  return record("SubBackward", {a, b}, ops::sub(a, b), {},
                [sa, sb](const Grads& g, const Saved&, const Needs& needs) {
                  return Grads{needs[0] ? ops::sum_to(g[0], sa) : Tensor(),
                               needs[1] ? ops::neg(ops::sum_to(g[0], sb)) : Tensor()};
                });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return record("MulBackward", {a, b}, ops::mul(a, b), {a, b},
                [](const Grads& g, const Saved& s, const Needs& needs) {
                  return Grads{needs[0] ? ops::sum_to(ops::mul(g[0], s[1]), s[0].shape()) : Tensor(),
                               needs[1] ? ops::sum_to(ops::mul(g[0], s[0]), s[1].shape()) : Tensor()};
                });
}

Tensor div(const Tensor& a, const Tensor& b) {
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  return record("DivBackward", {a, b}, ops::div(a, b), {a, b},
                [](const Grads& g, const Saved& s, const Needs& needs) {
                  Tensor ga, gb;
                  if (needs[0]) ga = ops::sum_to(ops::div(g[0], s[1]), s[0].shape());
                  if (needs[1]) {
                    Tensor t = ops::div(ops::mul(g[0], s[0]), ops::mul(s[1], s[1]));
                    gb = ops::neg(ops::sum_to(t, s[1].shape()));
                  }
                  return Grads{ga, gb};
                });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor y = ops::binary(BinaryOp::pow, a, b);
  return record("PowBackward", {a, b}, y, {a, b, y},
                [](const Grads& g, const Saved& s, const Needs& needs) {
                  const Tensor &a = s[0], &b = s[1], &y = s[2];
                  Tensor ga, gb;
                  if (needs[0]) {
                    // b * a^(b-1)
                    Tensor d = ops::mul(b, ops::binary(BinaryOp::pow, a, ops::add_scalar(b, -1.0)));
                    ga = ops::sum_to(ops::mul(g[0], d), a.shape());
                  }
                  if (needs[1]) {
                    // y * log(a); at a == 0 with b >= 0 the true derivative is 0 (not 0 * -inf).
                    Tensor d = ops::mul(y, ops::unary(UnaryOp::log, a));
                    Tensor zero_base = ops::mul(cmp(BinaryOp::eq, a, scalar_like(a, 0)),
                                                cmp(BinaryOp::ge, b, scalar_like(b, 0)));
                    d = ops::where(zero_base, scalar_like(d, 0), d);
                    gb = ops::sum_to(ops::mul(g[0], d), b.shape());
                  }
                  return Grads{ga, gb};
                });
}

Tensor pow(const Tensor& a, double exponent) {
  Tensor y = ops::binary_scalar(BinaryOp::pow, a, exponent);
  return record("PowScalarBackward", {a}, y, {a},
                [exponent](const Grads& g, const Saved& s, const Needs&) {
                  // e * a^(e-1); e == 0 is constant (avoids 0 * inf at a == 0).
                  if (exponent == 0.0) return Grads{ops::mul_scalar(g[0], 0.0)};
                  Tensor d = ops::mul_scalar(ops::binary_scalar(BinaryOp::pow, s[0], exponent - 1.0),
                                             exponent);
                  return Grads{ops::mul(g[0], d)};
                });
}

// maximum/minimum: the gradient goes to the larger (smaller) operand; ties split it evenly,
// as PyTorch does, so that the two halves still sum to the incoming gradient.
static Tensor extremum(BinaryOp op, BinaryOp wins, const char* name, const Tensor& a,
                       const Tensor& b) {
  return record(name, {a, b}, ops::binary(op, a, b), {a, b},
                [wins](const Grads& g, const Saved& s, const Needs& needs) {
                  Tensor wa = ops::add(cmp(wins, s[0], s[1]),
                                       ops::mul_scalar(cmp(BinaryOp::eq, s[0], s[1]), 0.5));
                  Tensor ga, gb;
                  if (needs[0]) ga = ops::sum_to(ops::mul(g[0], wa), s[0].shape());
                  if (needs[1]) {
                    Tensor wb = ops::binary_scalar(BinaryOp::sub, wa, 1.0, /*scalar_first=*/true);
                    gb = ops::sum_to(ops::mul(g[0], wb), s[1].shape());
                  }
                  return Grads{ga, gb};
                });
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  return extremum(BinaryOp::maximum, BinaryOp::gt, "MaximumBackward", a, b);
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return extremum(BinaryOp::minimum, BinaryOp::lt, "MinimumBackward", a, b);
}

// ---- with a scalar ----

Tensor add(const Tensor& a, double s) {
  return record("AddScalarBackward", {a}, ops::add_scalar(a, s), {},
                [](const Grads& g, const Saved&, const Needs&) { return Grads{g[0]}; });
}

Tensor mul(const Tensor& a, double s) {
  return record("MulScalarBackward", {a}, ops::mul_scalar(a, s), {},
                [s](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::mul_scalar(g[0], s)};
                });
}

// s / a, with d/da = -s / a^2 = -y / a.
static Tensor rdiv(double s, const Tensor& a) {
  Tensor y = ops::binary_scalar(BinaryOp::div, a, s, /*scalar_first=*/true);
  return record("RDivScalarBackward", {a}, y, {a, y},
                [](const Grads& g, const Saved& sv, const Needs&) {
                  return Grads{ops::neg(ops::div(ops::mul(g[0], sv[1]), sv[0]))};
                });
}

// ---- unary ----

Tensor neg(const Tensor& x) {
  return record("NegBackward", {x}, ops::neg(x), {},
                [](const Grads& g, const Saved&, const Needs&) { return Grads{ops::neg(g[0])}; });
}

Tensor exp(const Tensor& x) {
  Tensor y = ops::unary(UnaryOp::exp, x);
  return record("ExpBackward", {x}, y, {y}, [](const Grads& g, const Saved& s, const Needs&) {
    return Grads{ops::mul(g[0], s[0])};
  });
}

Tensor log(const Tensor& x) {
  return record("LogBackward", {x}, ops::unary(UnaryOp::log, x), {x},
                [](const Grads& g, const Saved& s, const Needs&) {
                  return Grads{ops::div(g[0], s[0])};
                });
}

Tensor sqrt(const Tensor& x) {
  Tensor y = ops::unary(UnaryOp::sqrt, x);
  return record("SqrtBackward", {x}, y, {y}, [](const Grads& g, const Saved& s, const Needs&) {
    return Grads{ops::div(ops::mul_scalar(g[0], 0.5), s[0])};  // 1 / (2 sqrt x)
  });
}

Tensor rsqrt(const Tensor& x) {
  Tensor y = ops::unary(UnaryOp::rsqrt, x);
  return record("RsqrtBackward", {x}, y, {y}, [](const Grads& g, const Saved& s, const Needs&) {
    // d x^(-1/2) = -1/2 x^(-3/2) = -1/2 y^3
    Tensor y3 = ops::mul(ops::mul(s[0], s[0]), s[0]);
    return Grads{ops::mul(ops::mul_scalar(g[0], -0.5), y3)};
  });
}

Tensor tanh(const Tensor& x) {
  Tensor y = ops::unary(UnaryOp::tanh, x);
  return record("TanhBackward", {x}, y, {y}, [](const Grads& g, const Saved& s, const Needs&) {
    return Grads{ops::binary(BinaryOp::tanh_backward, g[0], s[0])};
  });
}

Tensor sigmoid(const Tensor& x) {
  Tensor y = ops::unary(UnaryOp::sigmoid, x);
  return record("SigmoidBackward", {x}, y, {y}, [](const Grads& g, const Saved& s, const Needs&) {
    return Grads{ops::binary(BinaryOp::sigmoid_backward, g[0], s[0])};
  });
}

Tensor relu(const Tensor& x) {
  return record("ReluBackward", {x}, ops::unary(UnaryOp::relu, x), {x},
                [](const Grads& g, const Saved& s, const Needs&) {
                  return Grads{ops::binary(BinaryOp::relu_backward, g[0], s[0])};
                });
}

Tensor gelu(const Tensor& x) {
  return record("GeluBackward", {x}, ops::unary(UnaryOp::gelu, x), {x},
                [](const Grads& g, const Saved& s, const Needs&) {
                  return Grads{ops::binary(BinaryOp::gelu_backward, g[0], s[0])};
                });
}

Tensor abs(const Tensor& x) {
  return record("AbsBackward", {x}, ops::unary(UnaryOp::abs, x), {x},
                [](const Grads& g, const Saved& s, const Needs&) {
                  return Grads{ops::mul(g[0], ops::unary(UnaryOp::sign, s[0]))};
                });
}

// ---- selection ----

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Shape sa = a.shape(), sb = b.shape();
  // cond is saved, not an input: no gradient ever flows to it.
  return record("WhereBackward", {a, b}, ops::where(cond, a, b), {cond},
                [sa, sb](const Grads& g, const Saved& s, const Needs& needs) {
                  Tensor zero = scalar_like(g[0], 0);
                  Tensor ga, gb;
                  if (needs[0]) ga = ops::sum_to(ops::where(s[0], g[0], zero), sa);
                  if (needs[1]) gb = ops::sum_to(ops::where(s[0], zero, g[0]), sb);
                  return Grads{ga, gb};
                });
}

Tensor masked_fill(const Tensor& t, const Tensor& mask, double value) {
  return record("MaskedFillBackward", {t}, ops::masked_fill(t, mask, value), {mask},
                [](const Grads& g, const Saved& s, const Needs&) {
                  return Grads{ops::masked_fill(g[0], s[0], 0.0)};
                });
}

Tensor eq(const Tensor& a, const Tensor& b) { return ops::binary(BinaryOp::eq, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return ops::binary(BinaryOp::gt, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return ops::binary(BinaryOp::lt, a, b); }

// ---- operators ----

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) {
  // a * (1/s) would round 1/s first; an exact division keeps x / 3 == x / 3.
  Tensor y = ops::binary_scalar(BinaryOp::div, a, s);
  return record("DivScalarBackward", {a}, y, {}, [s](const Grads& g, const Saved&, const Needs&) {
    return Grads{ops::binary_scalar(BinaryOp::div, g[0], s)};
  });
}
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return add(neg(a), s); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

// ---- reductions ----

Tensor sum(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  Shape in_shape = t.shape();
  std::vector<bool> mask = reduced_dims(t, dims, "sum");
  return record("SumBackward", {t}, ops::sum(t, dims, keepdim), {},
                [in_shape, mask](const Grads& g, const Saved&, const Needs&) {
                  return Grads{spread_grad(g[0], in_shape, mask)};
                });
}

Tensor mean(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  Shape in_shape = t.shape();
  std::vector<bool> mask = reduced_dims(t, dims, "mean");
  int64_t count = 1;
  for (size_t d = 0; d < mask.size(); ++d)
    if (mask[d]) count *= in_shape[d];
  return record("MeanBackward", {t}, ops::mean(t, dims, keepdim), {},
                [in_shape, mask, count](const Grads& g, const Saved&, const Needs&) {
                  Tensor gs = ops::binary_scalar(BinaryOp::div, g[0], double(count));
                  return Grads{spread_grad(gs, in_shape, mask)};
                });
}

Tensor max(const Tensor& t, int64_t dim, bool keepdim) {
  int64_t d = t.wrap_dim(dim, "max");
  Tensor values = ops::amax(t, {d}, keepdim);
  if (!any_requires_grad({t})) return values;
  // The gradient goes to the first maximal element: a one-hot along `dim` built by comparing
  // arange(len) (shaped to broadcast along dim) with the argmax.
  Tensor idx = ops::argmax(t, d, /*keepdim=*/true);
  Shape in_shape = t.shape();
  return record("MaxBackward", {t}, values, {idx},
                [in_shape, d, keepdim](const Grads& g, const Saved& s, const Needs&) {
                  const Tensor& idx = s[0];
                  Shape pos_shape(in_shape.size(), 1);
                  pos_shape[size_t(d)] = in_shape[size_t(d)];
                  Tensor pos = ops::view(
                      arange(in_shape[size_t(d)], TensorOptions(DType::i64).device(idx.device())),
                      pos_shape);
                  Tensor onehot = ops::to_dtype(ops::binary(BinaryOp::eq, pos, idx), g[0].dtype());
                  Shape keep = in_shape;
                  keep[size_t(d)] = 1;
                  Tensor gk = keepdim ? g[0] : to_keepdim(g[0], keep);
                  return Grads{ops::mul(onehot, gk)};
                });
}

Tensor argmax(const Tensor& t, int64_t dim, bool keepdim) { return ops::argmax(t, dim, keepdim); }

// ---- the Tensor methods that are reductions ----

Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const {
  return fg::sum(*this, dims, keepdim);
}
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const {
  return fg::mean(*this, dims, keepdim);
}
Tensor Tensor::max(int64_t dim, bool keepdim) const { return fg::max(*this, dim, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return fg::argmax(*this, dim, keepdim); }

}  // namespace fg
