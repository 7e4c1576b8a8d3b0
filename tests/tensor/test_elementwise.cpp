// Tests of the elementwise ops: unary, binary (broadcasting, strided views), binary with a
// scalar, where, masked_fill, their errors, and a gradcheck of every differentiable one.
//
// References are plain loops in double over the host values of the very tensors the op saw
// (read back after any rounding to bf16), so the only error left is the op's own.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "support/test_util.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::host;
using test::make;
using test::poison;
using test::rel_err;
using test::require_close;
using test::rnd;
using test::small_ints;
using test::tol;
using test::uniform;

namespace {

const double kGeluK = 0.7978845608028654, kGeluC = 0.044715;

// The index into a (right-aligned, broadcast) input of shape `in` for a linear index of `out`.
int64_t bcast_index(int64_t linear, const Shape& out, const Shape& in) {
  int64_t idx = 0, stride = 1;
  size_t lead = out.size() - in.size();
  for (int64_t d = int64_t(out.size()) - 1; d >= 0; --d) {
    int64_t i = linear % out[size_t(d)];
    linear /= out[size_t(d)];
    if (size_t(d) >= lead) {
      int64_t sz = in[size_t(d) - lead];
      if (sz != 1) idx += i * stride;
      stride *= sz;
    }
  }
  return idx;
}

double gelu_ref(double x) { return 0.5 * x * (1 + std::tanh(kGeluK * (x + kGeluC * x * x * x))); }
double gelu_grad_ref(double x) {
  double t = std::tanh(kGeluK * (x + kGeluC * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kGeluK * (1 + 3 * kGeluC * x * x);
}

struct UnaryCase {
  UnaryOp op;
  std::function<double(double)> f;
  bool positive;  // domain (0.5, 2) instead of (-3, 3)
  bool int_ok;
};

std::vector<UnaryCase> unary_cases() {
  return {
      {UnaryOp::neg, [](double x) { return -x; }, false, true},
      {UnaryOp::exp, [](double x) { return std::exp(x); }, false, false},
      {UnaryOp::log, [](double x) { return std::log(x); }, true, false},
      {UnaryOp::sqrt, [](double x) { return std::sqrt(x); }, true, false},
      {UnaryOp::rsqrt, [](double x) { return 1 / std::sqrt(x); }, true, false},
      {UnaryOp::tanh, [](double x) { return std::tanh(x); }, false, false},
      {UnaryOp::relu, [](double x) { return x > 0 ? x : 0; }, false, true},
      {UnaryOp::gelu, gelu_ref, false, false},
      {UnaryOp::abs, [](double x) { return std::fabs(x); }, false, true},
      {UnaryOp::sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }, false, false},
      {UnaryOp::sin, [](double x) { return std::sin(x); }, false, false},
      {UnaryOp::cos, [](double x) { return std::cos(x); }, false, false},
      {UnaryOp::square, [](double x) { return x * x; }, false, true},
      {UnaryOp::reciprocal, [](double x) { return 1 / x; }, true, false},
      {UnaryOp::sign, [](double x) { return double((x > 0) - (x < 0)); }, false, true},
  };
}

struct BinaryCase {
  BinaryOp op;
  std::function<double(double, double)> f;
  double alo, ahi, blo, bhi;
  bool integers;  // small-integer inputs (comparisons: ties must occur)
  bool int_ok;
};

std::vector<BinaryCase> binary_cases() {
  auto gt = [](double a, double b) { return double(a > b); };
  return {
      {BinaryOp::add, [](double a, double b) { return a + b; }, -2, 2, -2, 2, false, true},
      {BinaryOp::sub, [](double a, double b) { return a - b; }, -2, 2, -2, 2, false, true},
      {BinaryOp::mul, [](double a, double b) { return a * b; }, -2, 2, -2, 2, false, true},
      {BinaryOp::div, [](double a, double b) { return a / b; }, -2, 2, 0.5, 2, false, false},
      {BinaryOp::pow, [](double a, double b) { return std::pow(a, b); }, 0.5, 2, -2, 2, false, false},
      {BinaryOp::maximum, [](double a, double b) { return std::max(a, b); }, -2, 2, -2, 2, false, true},
      {BinaryOp::minimum, [](double a, double b) { return std::min(a, b); }, -2, 2, -2, 2, false, true},
      {BinaryOp::eq, [](double a, double b) { return double(a == b); }, -2, 2, -2, 2, true, true},
      {BinaryOp::ne, [](double a, double b) { return double(a != b); }, -2, 2, -2, 2, true, true},
      {BinaryOp::lt, [](double a, double b) { return double(a < b); }, -2, 2, -2, 2, true, true},
      {BinaryOp::le, [](double a, double b) { return double(a <= b); }, -2, 2, -2, 2, true, true},
      {BinaryOp::gt, gt, -2, 2, -2, 2, true, true},
      {BinaryOp::ge, [](double a, double b) { return double(a >= b); }, -2, 2, -2, 2, true, true},
      {BinaryOp::gelu_backward, [](double g, double x) { return g * gelu_grad_ref(x); }, -2, 2, -3, 3, false, false},
      {BinaryOp::relu_backward, [](double g, double x) { return x > 0 ? g : 0; }, -2, 2, -2, 2, false, false},
      {BinaryOp::tanh_backward, [](double g, double y) { return g * (1 - y * y); }, -2, 2, -1, 1, false, false},
      {BinaryOp::sigmoid_backward, [](double g, double y) { return g * y * (1 - y); }, -2, 2, 0, 1, false, false},
  };
}

Tensor binary_ref(const BinaryCase& c, const Tensor& a, const Tensor& b) {
  Shape s = broadcast_shapes(a.shape(), b.shape(), "ref");
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> r(size_t(shape_numel(s)));
  for (int64_t i = 0; i < int64_t(r.size()); ++i)
    r[size_t(i)] = c.f(av[size_t(bcast_index(i, s, a.shape()))],
                       bv[size_t(bcast_index(i, s, b.shape()))]);
  return host(r, s);
}

// Operand layouts: each yields (a, b) for one binary test.
struct Layout {
  const char* name;
  std::function<std::pair<Tensor, Tensor>(const BinaryCase&, DType, Device, uint64_t)> make;
};

std::vector<Layout> layouts() {
  auto gen = [](const BinaryCase& c, const Shape& s, DType dt, Device d, uint64_t seed, bool first) {
    double lo = first ? c.alo : c.blo, hi = first ? c.ahi : c.bhi;
    if (c.integers || !is_floating(dt)) {
      if (!is_floating(dt)) { lo = -5; hi = 5; }
      return make(small_ints(shape_numel(s), seed, int(std::ceil(lo)), int(std::floor(hi))), s, dt, d);
    }
    return make(uniform(shape_numel(s), seed, lo, hi), s, dt, d);
  };
  return {
      {"same shape, contiguous",
       [gen](const BinaryCase& c, DType dt, Device d, uint64_t seed) {
         return std::make_pair(gen(c, {17, 9}, dt, d, seed, true), gen(c, {17, 9}, dt, d, seed + 1, false));
       }},
      {"broadcast [3,1,5] with [4,5]",
       [gen](const BinaryCase& c, DType dt, Device d, uint64_t seed) {
         return std::make_pair(gen(c, {3, 1, 5}, dt, d, seed, true), gen(c, {4, 5}, dt, d, seed + 1, false));
       }},
      {"transposed a with contiguous b",
       [gen](const BinaryCase& c, DType dt, Device d, uint64_t seed) {
         Tensor a = ops::transpose(gen(c, {6, 4}, dt, d, seed, true), 0, 1);
         REQUIRE_FALSE(a.is_contiguous());
         return std::make_pair(a, gen(c, {4, 6}, dt, d, seed + 1, false));
       }},
      {"0-d a with strided (step 2) b",
       [gen](const BinaryCase& c, DType dt, Device d, uint64_t seed) {
         Tensor b = ops::slice(gen(c, {3, 10}, dt, d, seed + 1, false), 1, 1, 10, 2);
         REQUIRE_FALSE(b.is_contiguous());
         Tensor a = ops::view(gen(c, {1}, dt, d, seed, true), Shape{});
         return std::make_pair(a, b);
       }},
  };
}

}  // namespace

// ---- unary ----

FG_TEST_ALL_DEVICES("unary ops match a double reference (f32, f64, bf16; strided inputs)",
                    "[elementwise]") {
  uint64_t seed = 100;
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    for (const auto& c : unary_cases()) {
      double lo = c.positive ? 0.5 : -3, hi = c.positive ? 2 : 3;
      std::vector<Tensor> inputs = {
          make(uniform(7 * 13, ++seed, lo, hi), {7, 13}, dt, device),
          make(uniform(64 * 32, ++seed, lo, hi), {64, 32}, dt, device),
          ops::transpose(make(uniform(13 * 7, ++seed, lo, hi), {13, 7}, dt, device), 0, 1),
          ops::slice(make(uniform(5 * 12, ++seed, lo, hi), {5, 12}, dt, device), 1, 1, 12, 3),
          make({c.positive ? 1.5 : -1.25}, {}, dt, device),
      };
      for (const Tensor& x : inputs) {
        INFO(unary_op_name(c.op) << " " << dtype_name(dt) << " " << shape_str(x.shape())
                                 << (x.is_contiguous() ? "" : " (strided)"));
        auto xv = x.to_vector<double>();
        std::vector<double> r(xv.size());
        for (size_t i = 0; i < xv.size(); ++i) r[i] = c.f(xv[i]);
        poison(device, 1 << 14);
        Tensor y = ops::unary(c.op, x);
        REQUIRE(y.dtype() == dt);
        REQUIRE(y.device() == device);
        REQUIRE(y.is_contiguous());
        require_close(y, host(r, x.shape()), dt);
      }
    }
  }
}

FG_TEST_ALL_DEVICES("unary ops on f16 and on integers", "[elementwise]") {
  // f16: one pass over every op.
  uint64_t seed = 300;
  for (const auto& c : unary_cases()) {
    double lo = c.positive ? 0.5 : -3, hi = c.positive ? 2 : 3;
    Tensor x = make(uniform(5 * 11, ++seed, lo, hi), {5, 11}, DType::f16, device);
    auto xv = x.to_vector<double>();
    std::vector<double> r(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) r[i] = c.f(xv[i]);
    INFO(unary_op_name(c.op));
    require_close(ops::unary(c.op, x), host(r, x.shape()), DType::f16);
  }
  // Integers: the ops with an integer meaning are exact; the rest throw naming op and dtype.
  for (DType dt : {DType::i32, DType::i64}) {
    Tensor base = make(small_ints(6 * 7, ++seed, -20, 20), {6, 7}, dt, device);
    Tensor x = ops::transpose(base, 0, 1);
    auto xv = x.to_vector<double>();
    for (const auto& c : unary_cases()) {
      INFO(unary_op_name(c.op) << " " << dtype_name(dt));
      if (!c.int_ok) {
        REQUIRE_THROWS_WITH(ops::unary(c.op, x), Contains(unary_op_name(c.op)) && Contains(dtype_name(dt)));
        continue;
      }
      std::vector<double> r(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) r[i] = c.f(xv[i]);
      Tensor y = ops::unary(c.op, x);
      REQUIRE(y.dtype() == dt);
      require_close(y, host(r, x.shape()), dt);
    }
  }
}

// ---- binary ----

FG_TEST_ALL_DEVICES("binary ops match a double reference with broadcasting and strided views",
                    "[elementwise]") {
  uint64_t seed = 1000;
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
    for (const auto& c : binary_cases()) {
      for (const auto& layout : layouts()) {
        INFO(binary_op_name(c.op) << " " << dtype_name(dt) << " " << layout.name);
        seed += 2;
        auto ab = layout.make(c, dt, device, seed);
        const Tensor &a = ab.first, &b = ab.second;
        if (!is_floating(dt) && !c.int_ok) {
          REQUIRE_THROWS_WITH(ops::binary(c.op, a, b),
                              Contains(binary_op_name(c.op)) && Contains(dtype_name(dt)));
          continue;
        }
        Tensor ref = binary_ref(c, a, b);
        poison(device, 1 << 14);
        Tensor y = ops::binary(c.op, a, b);
        REQUIRE(y.dtype() == dt);
        REQUIRE(y.device() == device);
        require_close(y, ref, dt);
      }
    }
  }
}

FG_TEST_ALL_DEVICES("binary ops on f16", "[elementwise]") {
  uint64_t seed = 2000;
  for (const auto& c : binary_cases()) {
    auto ab = layouts()[1].make(c, DType::f16, device, seed += 2);
    INFO(binary_op_name(c.op));
    require_close(ops::binary(c.op, ab.first, ab.second), binary_ref(c, ab.first, ab.second),
                  DType::f16);
  }
}

FG_TEST_ALL_DEVICES("large elementwise ops cover every thread of the grid", "[elementwise]") {
  // 1031 x 2053 = 2.1M elements: more than one pass of the CUDA grid-stride loops.
  Tensor a = rnd({1031, 2053}, DType::f32, device, 7);
  Tensor row = rnd({2053}, DType::f32, device, 8);
  auto av = a.to_vector<double>(), rv = row.to_vector<double>();
  std::vector<double> r(av.size());
  for (size_t i = 0; i < av.size(); ++i) r[i] = av[i] * rv[i % 2053];
  poison(device, 1 << 22);
  require_close(ops::mul(a, row), host(r, a.shape()), DType::f32);

  Tensor at = ops::transpose(a, 0, 1);  // strided path over every element
  auto atv = at.to_vector<double>();
  for (size_t i = 0; i < atv.size(); ++i) r[i] = std::exp(atv[i]);
  poison(device, 1 << 22);
  Tensor e = ops::unary(UnaryOp::exp, at);
  require_close(e, host(r, at.shape()), DType::f32);
  if (device.is_cuda()) {
    // And the same against the CPU path on the same inputs.
    Tensor e_cpu = ops::unary(UnaryOp::exp, ops::to_device(at, Device::cpu()));
    REQUIRE(rel_err(e, e_cpu) < 1e-6);
  }
}

FG_TEST_ALL_DEVICES("binary_scalar with the scalar on either side", "[elementwise]") {
  uint64_t seed = 3000;
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
    for (const auto& c : binary_cases()) {
      for (bool scalar_first : {false, true}) {
        INFO(binary_op_name(c.op) << " " << dtype_name(dt) << " scalar_first " << scalar_first);
        // The tensor plays `a` when the scalar comes second and `b` when it comes first.
        double lo = scalar_first ? c.blo : c.alo, hi = scalar_first ? c.bhi : c.ahi;
        double s = scalar_first ? (c.alo + c.ahi) / 2 + 0.25 : (c.blo + c.bhi) / 2 + 0.25;
        Tensor x;
        if (c.integers || !is_floating(dt)) {
          x = make(small_ints(5 * 9, seed += 1, -3, 3), {5, 9}, dt, device);
          s = 1;  // an integer that ties with some elements
        } else {
          x = make(uniform(5 * 9, seed += 1, lo, hi), {5, 9}, dt, device);
        }
        x = ops::transpose(x, 0, 1);
        if (!is_floating(dt) && !c.int_ok) {
          REQUIRE_THROWS_AS(ops::binary_scalar(c.op, x, s, scalar_first), fg::Error);
          continue;
        }
        auto xv = x.to_vector<double>();
        std::vector<double> r(xv.size());
        for (size_t i = 0; i < xv.size(); ++i) r[i] = scalar_first ? c.f(s, xv[i]) : c.f(xv[i], s);
        poison(device, 1 << 14);
        Tensor y = ops::binary_scalar(c.op, x, s, scalar_first);
        require_close(y, host(r, x.shape()), dt);
      }
    }
  }
  // Integer tensors take only integer scalars.
  Tensor xi = make({1, 2, 3}, {3}, DType::i64, device);
  REQUIRE_THROWS_WITH(ops::binary_scalar(BinaryOp::add, xi, 0.5),
                      Contains("add") && Contains("0.5") && Contains("i64"));
  REQUIRE(ops::add_scalar(xi, -4).to_vector<int64_t>() == std::vector<int64_t>{-3, -2, -1});
}

// ---- where and masked_fill ----

FG_TEST_ALL_DEVICES("where broadcasts cond, a and b; cond may have another dtype",
                    "[elementwise]") {
  uint64_t seed = 4000;
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32}) {
    for (DType cdt : {DType::f32, DType::i64, DType::bf16, DType::i32}) {
      INFO("values " << dtype_name(dt) << " cond " << dtype_name(cdt));
      // cond values in {-1, 0, 1}: -1 is nonzero, so it must select a.
      Tensor cond = make(small_ints(4, seed++, -1, 1), {4, 1}, cdt, device);
      Tensor a = ops::transpose(rnd({5, 4, 3}, dt, device, seed++), 0, 2);  // [3, 4, 5] strided
      Tensor b = rnd({5}, dt, device, seed++);
      Shape s = {3, 4, 5};
      auto cv = cond.to_vector<double>(), avv = a.to_vector<double>(), bv = b.to_vector<double>();
      std::vector<double> r(size_t(shape_numel(s)));
      for (int64_t i = 0; i < int64_t(r.size()); ++i)
        r[size_t(i)] = cv[size_t(bcast_index(i, s, cond.shape()))] != 0
                           ? avv[size_t(i)]
                           : bv[size_t(bcast_index(i, s, b.shape()))];
      poison(device, 1 << 14);
      Tensor y = ops::where(cond, a, b);
      REQUIRE(y.dtype() == dt);
      REQUIRE(y.shape() == s);
      REQUIRE(test::max_abs_diff(y, host(r, s)) == 0);
    }
  }
  // a and b must agree in dtype and device.
  Tensor c = make({1, 0}, {2}, DType::f32, device);
  REQUIRE_THROWS_WITH(ops::where(c, rnd({2}, DType::f32, device, 1), rnd({2}, DType::f64, device, 2)),
                      Contains("where") && Contains("f32") && Contains("f64"));
  REQUIRE_THROWS_WITH(ops::where(make({1, 0, 1}, {3}, DType::f32, device), rnd({2}, DType::f32, device, 1),
                                 rnd({2}, DType::f32, device, 2)),
                      Contains("where") && Contains("[3]") && Contains("[2]"));
}

FG_TEST_ALL_DEVICES("masked_fill fills where the mask is nonzero", "[elementwise]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
    INFO(dtype_name(dt));
    Tensor t = ops::transpose(rnd({5, 4}, dt, device, 11), 0, 1);  // [4, 5] strided
    Tensor mask = make({1, 0, 0, 1, 1}, {1, 5}, DType::i32, device);
    auto tv = t.to_vector<double>();
    std::vector<double> r(tv.size());
    for (size_t i = 0; i < r.size(); ++i) r[i] = (i % 5 == 0 || i % 5 >= 3) ? -7.0 : tv[i];
    Tensor y = ops::masked_fill(t, mask, -7.0);
    REQUIRE(y.shape() == t.shape());
    REQUIRE(test::max_abs_diff(y, host(r, t.shape())) == 0);
  }
  // -inf (the attention mask value) survives the fill exactly.
  Tensor t = rnd({2, 3}, DType::f32, device, 12);
  Tensor mask = make({0, 1, 0, 1, 0, 0}, {2, 3}, DType::f32, device);
  auto y = ops::masked_fill(t, mask, -INFINITY).to_vector<double>();
  REQUIRE(std::isinf(y[1]));
  REQUIRE(y[1] < 0);
  REQUIRE(std::isinf(y[3]));
  REQUIRE(std::isfinite(y[0]));
  // The mask may not widen the tensor.
  REQUIRE_THROWS_WITH(ops::masked_fill(rnd({3}, DType::f32, device, 1), make({1, 0}, {2, 1}, DType::f32, device), 0),
                      Contains("masked_fill") && Contains("[2, 1]"));
}

// ---- errors ----

FG_TEST_ALL_DEVICES("elementwise errors name the op, shapes, dtypes and devices",
                    "[elementwise][errors]") {
  Tensor a = rnd({3, 4}, DType::f32, device, 1);
  Tensor b = rnd({5}, DType::f32, device, 2);
  REQUIRE_THROWS_WITH(ops::add(a, b), Contains("add") && Contains("[3, 4]") && Contains("[5]"));
  REQUIRE_THROWS_AS(fg::mul(a, b), fg::Error);
  REQUIRE_THROWS_WITH(a + b, Contains("[3, 4]"));
  Tensor c = rnd({3, 4}, DType::f64, device, 3);
  REQUIRE_THROWS_WITH(ops::mul(a, c), Contains("mul") && Contains("f32") && Contains("f64"));
  REQUIRE_THROWS_WITH(fg::maximum(a, c), Contains("f64"));
  Tensor i = rnd({3, 4}, DType::i64, device, 4);
  REQUIRE_THROWS_WITH(ops::div(i, i), Contains("div") && Contains("i64"));
  REQUIRE_THROWS_WITH(ops::unary(UnaryOp::exp, i), Contains("exp") && Contains("i64"));
  REQUIRE_THROWS_WITH(ops::add(Tensor(), a), Contains("add") && Contains("undefined"));
  if (device.is_cuda()) {
    Tensor h = rnd({3, 4}, DType::f32, Device::cpu(), 5);
    REQUIRE_THROWS_WITH(ops::add(a, h), Contains("add") && Contains("cpu") && Contains("cuda"));
    REQUIRE_THROWS_WITH(ops::where(h, a, a), Contains("where") && Contains("cpu") && Contains("cuda"));
    REQUIRE_THROWS_WITH(fg::sub(h, a), Contains("cpu") && Contains("cuda"));
  }
}

// ---- autograd ----

TEST_CASE("comparisons and where give no gradient to their conditions", "[elementwise][autograd]") {
  Tensor a = test::leaf({4}, Device::cpu());
  Tensor b = test::leaf({4}, Device::cpu(), DType::f64, 2);
  REQUIRE_FALSE(fg::gt(a, b).requires_grad());
  REQUIRE_FALSE(fg::eq(a, b).requires_grad());
  REQUIRE_FALSE(fg::lt(a, b).requires_grad());
  REQUIRE(fg::where(fg::gt(a, b), a, b).requires_grad());
  // Forward values of the differentiable wrappers are the raw ops'.
  REQUIRE(test::max_abs_diff(fg::add(a, b), ops::add(a, b)) == 0);
  REQUIRE(test::max_abs_diff(3.0 - a, ops::binary_scalar(BinaryOp::sub, a, 3.0, true)) == 0);
  REQUIRE(test::max_abs_diff(a / 3.0, ops::binary_scalar(BinaryOp::div, a, 3.0)) < 1e-16);
  REQUIRE(test::max_abs_diff(2.0 / b, ops::binary_scalar(BinaryOp::div, b, 2.0, true)) == 0);
}

FG_TEST_ALL_DEVICES("gradcheck: broadcasting binary ops", "[elementwise][autograd]") {
  using V = std::vector<Tensor>;
  // Broadcasting shapes: [3,1,4] with [2,4] -> [3,2,4].
  Tensor a = test::leaf({3, 1, 4}, device, DType::f64, 1);
  Tensor b = test::leaf({2, 4}, device, DType::f64, 2);
  Tensor bpos = test::leaf({2, 4}, device, DType::f64, 3, 0.5, 2);
  Tensor apos = test::leaf({3, 1, 4}, device, DType::f64, 4, 0.5, 2);
  test::require_gradcheck([](const V& x) { return fg::add(x[0], x[1]); }, {a, b});
  test::require_gradcheck([](const V& x) { return fg::sub(x[0], x[1]); }, {a, b});
  test::require_gradcheck([](const V& x) { return fg::mul(x[0], x[1]); }, {a, b});
  test::require_gradcheck([](const V& x) { return fg::div(x[0], x[1]); }, {a, bpos});
  test::require_gradcheck([](const V& x) { return fg::pow(x[0], x[1]); }, {apos, b});
  test::require_gradcheck([](const V& x) { return fg::maximum(x[0], x[1]); }, {a, b});
  test::require_gradcheck([](const V& x) { return fg::minimum(x[0], x[1]); }, {a, b});
  test::require_gradcheck([](const V& x) { return x[0] + x[1]; }, {b, a});
  test::require_gradcheck([](const V& x) { return x[0] - x[1]; }, {b, a});
  test::require_gradcheck([](const V& x) { return x[0] * x[1]; }, {b, a});
  test::require_gradcheck([](const V& x) { return x[0] / x[1]; }, {a, bpos});
  // A strided (transposed) operand.
  Tensor c = test::leaf({4, 2}, device, DType::f64, 5);
  test::require_gradcheck([](const V& x) { return fg::mul(fg::transpose(x[0], 0, 1), x[1]); }, {c, a});
}

FG_TEST_ALL_DEVICES("maximum splits the gradient of ties", "[elementwise][autograd]") {
  Tensor a = make({1, 2, 3}, {3}, DType::f64, device).set_requires_grad(true);
  Tensor b = make({1, 0, 5}, {3}, DType::f64, device).set_requires_grad(true);
  fg::sum(fg::maximum(a, b)).backward();
  REQUIRE(a.grad().to_vector<double>() == std::vector<double>{0.5, 1, 0});
  REQUIRE(b.grad().to_vector<double>() == std::vector<double>{0.5, 0, 1});
}

FG_TEST_ALL_DEVICES("gradcheck: scalar ops and operators", "[elementwise][autograd]") {
  using V = std::vector<Tensor>;
  Tensor a = test::leaf({3, 5}, device, DType::f64, 6);
  Tensor apos = test::leaf({3, 5}, device, DType::f64, 7, 0.5, 2);
  test::require_gradcheck([](const V& x) { return fg::add(x[0], 2.5); }, {a});
  test::require_gradcheck([](const V& x) { return fg::mul(x[0], -1.5); }, {a});
  test::require_gradcheck([](const V& x) { return fg::pow(x[0], 3.0); }, {a});
  test::require_gradcheck([](const V& x) { return fg::pow(x[0], -0.5); }, {apos});
  test::require_gradcheck([](const V& x) { return fg::pow(x[0], 0.0); }, {a});
  test::require_gradcheck([](const V& x) { return -x[0]; }, {a});
  test::require_gradcheck([](const V& x) { return x[0] + 1.0; }, {a});
  test::require_gradcheck([](const V& x) { return x[0] - 1.0; }, {a});
  test::require_gradcheck([](const V& x) { return x[0] * 3.0; }, {a});
  test::require_gradcheck([](const V& x) { return x[0] / 3.0; }, {a});
  test::require_gradcheck([](const V& x) { return 1.0 + x[0]; }, {a});
  test::require_gradcheck([](const V& x) { return 1.0 - x[0]; }, {a});
  test::require_gradcheck([](const V& x) { return 3.0 * x[0]; }, {a});
  test::require_gradcheck([](const V& x) { return 2.0 / x[0]; }, {apos});
}

FG_TEST_ALL_DEVICES("gradcheck: unary ops", "[elementwise][autograd]") {
  using V = std::vector<Tensor>;
  Tensor x = test::leaf({4, 5}, device, DType::f64, 8, -2, 2);
  Tensor xpos = test::leaf({4, 5}, device, DType::f64, 9, 0.5, 2);
  test::require_gradcheck([](const V& v) { return fg::neg(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::exp(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::log(v[0]); }, {xpos});
  test::require_gradcheck([](const V& v) { return fg::sqrt(v[0]); }, {xpos});
  test::require_gradcheck([](const V& v) { return fg::rsqrt(v[0]); }, {xpos});
  test::require_gradcheck([](const V& v) { return fg::tanh(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::sigmoid(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::relu(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::gelu(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::abs(v[0]); }, {x});
  // A chain on a strided view exercises gradients of composed nodes.
  test::require_gradcheck(
      [](const V& v) { return fg::tanh(fg::mul(fg::transpose(v[0], 0, 1), 2.0)); }, {x});
}

FG_TEST_ALL_DEVICES("gradcheck: where and masked_fill", "[elementwise][autograd]") {
  using V = std::vector<Tensor>;
  Tensor cond = make({1, 0, 0, 1}, {4, 1}, DType::i64, device);  // broadcasts over columns
  Tensor a = test::leaf({3, 4, 5}, device, DType::f64, 10);
  Tensor b = test::leaf({5}, device, DType::f64, 11);
  test::require_gradcheck([cond](const V& x) { return fg::where(cond, x[0], x[1]); }, {a, b});
  test::require_gradcheck([cond](const V& x) { return fg::where(cond, x[1], x[0]); }, {a, b});
  Tensor mask = make({0, 1, 1, 0, 0}, {5}, DType::f32, device);
  Tensor t = test::leaf({2, 5}, device, DType::f64, 12);
  test::require_gradcheck([mask](const V& x) { return fg::masked_fill(x[0], mask, -3.0); }, {t});
  // The filled positions get exactly zero gradient.
  Tensor t2 = test::leaf({2, 5}, device, DType::f64, 13);
  fg::sum(fg::masked_fill(t2, mask, -1e9)).backward();
  REQUIRE(t2.grad().to_vector<double>() == std::vector<double>{1, 0, 0, 1, 1, 1, 0, 0, 1, 1});
}

// GELU far out on both sides, f32: the forward tends to 0 and x, the gradient to 0 and 1, with
// no NaN where x^2 or x^3 overflow (the gradient multiplies a vanishing sigmoid by a huge
// slope there).
TEST_CASE("gelu and its gradient stay finite far out", "[elementwise]") {
  const std::vector<float> xs{-2e30f, -2e13f, -1e6f, -20.f, 20.f, 1e6f, 2e13f, 2e30f};
  Tensor x = from_vector<float>(xs, {int64_t(xs.size())}).set_requires_grad(true);
  Tensor y = fg::gelu(x);
  y.sum().backward();
  const std::vector<float> yv = y.to_vector<float>(), gv = x.grad().to_vector<float>();
  for (size_t i = 0; i < xs.size(); ++i) {
    INFO("x = " << xs[i] << ": gelu " << yv[i] << ", gradient " << gv[i]);
    CHECK(std::isfinite(yv[i]));
    CHECK(std::isfinite(gv[i]));
    CHECK(yv[i] == (xs[i] < 0 ? 0.f : xs[i]));
    CHECK(gv[i] == (xs[i] < 0 ? 0.f : 1.f));
  }
}

// Small integers (exact in every floating dtype) laid out so that each form of the CUDA
// launcher runs: contiguous sizes with and without a tail of n % V elements, views whose first
// element is not 16-byte aligned (the 32-bit strided form), a bias broadcast along rows with a
// row length that is a multiple of the vector width (vectorised in two dims) and one that is
// not, and a transposed operand. Every result is exact, so it is compared for equality.
static Tensor small_ints(const Shape& s, DType dt, Device d, int64_t salt) {
  const int64_t n = shape_numel(s);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double((i * 7 + salt) % 19 - 9);
  return from_vector<double>(v, s, TensorOptions(DType::f64)).to(d).to(dt);
}

FG_TEST_ALL_DEVICES("every layout form of the elementwise kernels gives exact results",
                    "[elementwise]") {
  for (DType dt : {DType::bf16, DType::f32, DType::f64}) {
    INFO(dtype_name(dt));
    auto check_add = [&](const Tensor& a, const Tensor& b) {
      std::vector<double> ha = a.contiguous().to_vector<double>();
      std::vector<double> hb = ops::expand(b, a.shape()).contiguous().to_vector<double>();
      std::vector<double> want(ha.size());
      for (size_t i = 0; i < ha.size(); ++i) want[i] = ha[i] + hb[i];
      CHECK(ops::add(a, b).to_vector<double>() == want);
      std::vector<double> twice(ha.size());
      for (size_t i = 0; i < ha.size(); ++i) twice[i] = 2 * ha[i];
      CHECK(ops::mul_scalar(a, 2.0).to_vector<double>() == twice);
      CHECK(ops::to_dtype(a, DType::f32).to_vector<double>() == ha);
    };
    for (int64_t n : {1, 7, 8, 9, 1031, 70001}) {
      INFO("contiguous n=" << n);
      check_add(small_ints({n}, dt, device, 1), small_ints({n}, dt, device, 2));
    }
    Tensor big = small_ints({1001}, dt, device, 3), other = small_ints({1001}, dt, device, 4);
    for (int64_t off : {1, 3}) {
      INFO("view at element " << off);
      check_add(big.narrow(0, off, 900), other.narrow(0, off, 900));
    }
    for (int64_t c : {64, 65}) {
      INFO("bias over rows of " << c);
      check_add(small_ints({37, c}, dt, device, 5), small_ints({c}, dt, device, 6));
    }
    check_add(small_ints({40, 24}, dt, device, 7).transpose(0, 1), small_ints({24, 40}, dt, device, 8));
    Tensor f = small_ints({3, 301}, dt, device, 9).narrow(1, 1, 300);
    ops::fill_(f, 5.0);
    for (double v : f.contiguous().to_vector<double>()) REQUIRE(v == 5.0);
    Tensor z = small_ints({257}, dt, device, 10);
    ops::fill_(z, 0.0);
    for (double v : z.to_vector<double>()) REQUIRE(v == 0.0);
  }
}
