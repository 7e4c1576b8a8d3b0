// Tests of the linear layer ops (ops::linear, ops::linear_weight_grad, ops::linear_input_grad,
// fg::linear, fg::linear_gelu_linear): y = x w^T + b with the optional GELU, the GELU's saved
// input, the weight and bias gradients, the input gradient with a GELU folded in, in every
// float dtype on both devices against double loops on the host; the cuBLASLt epilogue cases
// (bias, GELU with and without the saved input, bias gradient) and the fallbacks (f64, a row
// length cuBLASLt's aux rule refuses, unaligned operands); gradchecks; the fused node against
// the unfused chain matmul + add + gelu; errors.
#include <cmath>
#include <cstdlib>
#include <functional>

#include "core/env.h"
#include "support/test_util.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::rel_err;
using test::tol;

namespace {

Tensor rnd(const Shape& s, DType dt, Device d, uint64_t seed) {
  return test::rnd(s, dt, d, seed, -1, 1);
}

double gelu_ref(double v) {
  const double k = std::sqrt(2.0 / M_PI);
  return 0.5 * v * (1.0 + std::tanh(k * (v + 0.044715 * v * v * v)));
}

// The product of all dims but the last.
int64_t rows(const Tensor& x) { return shape_numel(Shape(x.shape().begin(), x.shape().end() - 1)); }

struct Ref {
  Tensor y, pre;
};

// The layer in double from the values the op saw: x [M, K], w [N, K], b [N] or undefined.
Ref ref_linear(const Tensor& x, const Tensor& w, const Tensor& b, bool gelu) {
  const int64_t N = w.size(0), K = w.size(1), M = rows(x);
  auto xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(size_t(N));
  std::vector<double> y(size_t(M * N)), pre(size_t(M * N));
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = 0; c < N; ++c) {
      double acc = bv[size_t(c)];
      for (int64_t k = 0; k < K; ++k) acc += xv[size_t(r * K + k)] * wv[size_t(c * K + k)];
      pre[size_t(r * N + c)] = acc;
      y[size_t(r * N + c)] = gelu ? gelu_ref(acc) : acc;
    }
  Shape out = x.shape();
  out.back() = N;
  return {test::host(y, out), test::host(pre, out)};
}

// gw = gy^T x and gb = column sums of gy, in double.
Ref ref_weight_grad(const Tensor& gy, const Tensor& x) {
  const int64_t N = gy.size(-1), K = x.size(-1), M = rows(x);
  auto gv = gy.to_vector<double>(), xv = x.to_vector<double>();
  std::vector<double> gw(size_t(N * K), 0.0), gb(size_t(N), 0.0);
  for (int64_t r = 0; r < M; ++r)
    for (int64_t n = 0; n < N; ++n) {
      gb[size_t(n)] += gv[size_t(r * N + n)];
      for (int64_t k = 0; k < K; ++k) gw[size_t(n * K + k)] += gv[size_t(r * N + n)] * xv[size_t(r * K + k)];
    }
  return {test::host(gw, {N, K}), test::host(gb, {N})};
}

}  // namespace

FG_TEST_ALL_DEVICES("linear: bias, GELU and its saved input in every float dtype", "[linear]") {
  // N = 40 takes cuBLASLt's epilogues on CUDA; N = 13 (aux rows not a multiple of 8) the
  // GELU-with-input case falls back to gemm plus a kernel; M = 1 and K = 1 are edge shapes.
  struct Case { Shape x; int64_t N; };
  const Case cases[] = {{{3, 5, 24}, 40}, {{7, 16}, 13}, {{1, 32}, 64}, {{9, 1}, 8}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16})
    for (const Case& c : cases)
      for (bool with_bias : {true, false})
        for (bool gelu : {false, true}) {
          const int64_t K = c.x.back();
          Tensor x = rnd(c.x, dt, device, 1), w = rnd({c.N, K}, dt, device, 2);
          Tensor b = with_bias ? rnd({c.N}, dt, device, 3) : Tensor();
          test::poison(device);
          ops::LinearResult r = ops::linear(x, w, b, gelu);
          Ref ref = ref_linear(x, w, b, gelu);
          INFO(dtype_name(dt) << " x " << shape_str(c.x) << " N " << c.N << " bias " << with_bias
                              << " gelu " << gelu);
          REQUIRE(r.y.dtype() == dt);
          REQUIRE(rel_err(r.y, ref.y) < tol(dt));
          REQUIRE(r.pre.defined() == gelu);
          if (gelu) REQUIRE(rel_err(r.pre, ref.pre) < tol(dt));
        }
}

FG_TEST_ALL_DEVICES("linear: GELU without a saved input, and K == 0", "[linear]") {
  // The op always saves pre with GELU; the kernel's own no-pre form is reached directly.
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor x = rnd({6, 24}, dt, device, 4), w = rnd({16, 24}, dt, device, 5), b = rnd({16}, dt, device, 6);
    Tensor y = empty({6, 16}, TensorOptions(dt).device(device));
    Tensor ws = ops::workspace(device,
                               FG_CALL_KERNEL(device, linear_workspace, dt, 6, 16, 24, true, true));
    FG_CALL_KERNEL(device, linear, dt, 6, 16, 24, x.data_ptr(), w.data_ptr(), b.data_ptr(),
                   nullptr, true, y.data_ptr(), nullptr, ws.defined() ? ws.data_ptr() : nullptr);
    REQUIRE(rel_err(y, ref_linear(x, w, b, true).y) < tol(dt));
  }
  // K == 0: the product is zero, so y = gelu(b) in every row.
  Tensor x0 = empty({3, 0}, TensorOptions(DType::f32).device(device));
  Tensor w0 = empty({5, 0}, TensorOptions(DType::f32).device(device));
  Tensor b0 = rnd({5}, DType::f32, device, 7);
  ops::LinearResult r = ops::linear(x0, w0, b0, true);
  REQUIRE(rel_err(r.y, ref_linear(x0, w0, b0, true).y) < 1e-6);
}

FG_TEST_ALL_DEVICES("linear: operands at unaligned addresses", "[linear]") {
  // Views starting one row (or one element) in: the plan must not assume 256-byte alignment.
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor xb = rnd({11, 24}, dt, device, 8), wb = rnd({33, 24}, dt, device, 9);
    Tensor bb = rnd({41}, dt, device, 10);
    Tensor x = xb.narrow(0, 1, 10), w = wb.narrow(0, 1, 32);
    // The bias one element in (refused by the epilogue's 16-byte rule: the fallback), and an
    // aligned one (the epilogue, with x and w one row in).
    for (Tensor b : {bb.narrow(0, 1, 32), bb.narrow(0, 0, 32)})
      for (bool gelu : {false, true}) {
        ops::LinearResult r = ops::linear(x, w, b, gelu);
        Ref ref = ref_linear(x, w, b, gelu);
        INFO(dtype_name(dt) << " gelu " << gelu);
        REQUIRE(rel_err(r.y, ref.y) < tol(dt));
      }
    Tensor gyb = rnd({10 * 32 + 1}, dt, device, 11);
    Tensor gy = gyb.narrow(0, 1, 320).view({10, 32});
    ops::LinearGrads g = ops::linear_weight_grad(gy, x, true);
    Ref ref = ref_weight_grad(gy, x);
    REQUIRE(rel_err(g.gw, ref.y) < tol(dt));
    REQUIRE(rel_err(g.gb, ref.pre) < tol(dt));
  }
}

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("linear on CUDA takes cuBLASLt's epilogues where it can, the fallback elsewhere",
          "[linear][cuda]") {
  // The number of products run through cuBLASLt epilogues, before and after each call.
  const Device dev = Device::cuda(0);
  auto runs_epilogue = [](const std::function<void()>& fn) {
    const uint64_t before = cuda::linear_epilogue_launches();
    fn();
    return cuda::linear_epilogue_launches() > before;
  };
  for (DType dt : {DType::bf16, DType::f32}) {
    INFO(dtype_name(dt));
    Tensor x = rnd({6, 24}, dt, dev, 1), b40 = rnd({40}, dt, dev, 2), b13 = rnd({13}, dt, dev, 3);
    Tensor w40 = rnd({40, 24}, dt, dev, 4), w13 = rnd({13, 24}, dt, dev, 5);
    REQUIRE(runs_epilogue([&] { ops::linear(x, w40, b40, false); }));
    REQUIRE(runs_epilogue([&] { ops::linear(x, w40, b40, true); }));
    REQUIRE(runs_epilogue([&] { ops::linear(x, w13, b13, false); }));
    REQUIRE(!runs_epilogue([&] { ops::linear(x, w13, b13, true); }));  // aux rows of 13
    REQUIRE(!runs_epilogue([&] { ops::linear(x, w40, Tensor(), false); }));  // plain: cuBLAS
    Tensor gy = rnd({6, 40}, dt, dev, 6);
    REQUIRE(runs_epilogue([&] { ops::linear_weight_grad(gy, x, true); }));
    REQUIRE(!runs_epilogue([&] { ops::linear_weight_grad(gy, x, false); }));
    REQUIRE(!runs_epilogue([&] { ops::linear_input_grad(gy, w40, Tensor(), false); }));
  }
  // f64 has no cuBLASLt epilogue here.
  Tensor xd = rnd({6, 24}, DType::f64, dev, 7), wd = rnd({40, 24}, DType::f64, dev, 8);
  REQUIRE(!runs_epilogue([&] { ops::linear(xd, wd, rnd({40}, DType::f64, dev, 9), true); }));
  // The hidden gradient's DGELU epilogue only with FLASHGRAD_DGELU_EPILOGUE=1 (ctest runs this
  // binary's [cuda] cases once more with it: linear_dgelu_cuda).
  const bool dgelu = env_flag("FLASHGRAD_DGELU_EPILOGUE");
  Tensor gy = rnd({6, 40}, DType::bf16, dev, 10), w = rnd({40, 24}, DType::bf16, dev, 11);
  Tensor pre = rnd({6, 24}, DType::bf16, dev, 12);
  REQUIRE(runs_epilogue([&] { ops::linear_input_grad(gy, w, pre, true); }) == dgelu);
}
#endif

FG_TEST_ALL_DEVICES("linear weight gradient and bias gradient in every float dtype", "[linear]") {
  struct Case { Shape lead; int64_t N, K; };
  const Case cases[] = {{{4, 9}, 40, 24}, {{13}, 7, 5}, {{1}, 16, 8}, {{2, 3}, 64, 1}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16})
    for (const Case& c : cases)
      for (bool need_bias : {true, false}) {
        Shape gs = c.lead, xs = c.lead;
        gs.push_back(c.N);
        xs.push_back(c.K);
        Tensor gy = rnd(gs, dt, device, 12), x = rnd(xs, dt, device, 13);
        test::poison(device);
        ops::LinearGrads g = ops::linear_weight_grad(gy, x, need_bias);
        Ref ref = ref_weight_grad(gy, x);
        INFO(dtype_name(dt) << " lead " << shape_str(c.lead) << " N " << c.N << " K " << c.K);
        REQUIRE(g.gw.shape() == Shape{c.N, c.K});
        REQUIRE(rel_err(g.gw, ref.y) < tol(dt));
        REQUIRE(g.gb.defined() == need_bias);
        if (need_bias) REQUIRE(rel_err(g.gb, ref.pre) < tol(dt));
      }
  // No rows: both gradients are zero.
  Tensor gy0 = empty({0, 6}, TensorOptions(DType::f32).device(device));
  Tensor x0 = empty({0, 4}, TensorOptions(DType::f32).device(device));
  ops::LinearGrads g0 = ops::linear_weight_grad(gy0, x0, true);
  REQUIRE(ops::sum_squares({g0.gw, g0.gb}).item<double>() == 0.0);
}

FG_TEST_ALL_DEVICES("linear input gradient, with the GELU before the layer folded in",
                    "[linear]") {
  // gx = (gy w) gelu'(pre) and gb = its column sums. On CUDA: gemm, gelu backward and a column
  // sum by default; with FLASHGRAD_DGELU_EPILOGUE=1 (ctest's linear_dgelu_cuda) K = 40 takes
  // cuBLASLt's DGELU epilogues and K = 13 (aux rows not a multiple of 8) still the fallback.
  struct Case { Shape lead; int64_t N, K; };
  const Case cases[] = {{{3, 7}, 24, 40}, {{11}, 9, 13}, {{1}, 16, 64}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16})
    for (const Case& c : cases)
      for (int form = 0; form < 3; ++form) {  // plain, GELU, GELU + bias gradient
        Shape gs = c.lead, ps = c.lead;
        gs.push_back(c.N);
        ps.push_back(c.K);
        Tensor gy = rnd(gs, dt, device, 20), w = rnd({c.N, c.K}, dt, device, 21);
        Tensor pre = form > 0 ? test::rnd(ps, dt, device, 22, -3, 3) : Tensor();
        test::poison(device);
        ops::LinearInputGrads g = ops::linear_input_grad(gy, w, pre, form == 2);
        // Reference in double: gy w, times gelu'(pre) from the double formula.
        const int64_t M = rows(gy);
        auto gv = gy.to_vector<double>(), wv = w.to_vector<double>();
        std::vector<double> pv = pre.defined() ? pre.to_vector<double>() : std::vector<double>();
        std::vector<double> gx(size_t(M * c.K), 0.0), gb(size_t(c.K), 0.0);
        const double k = std::sqrt(2.0 / M_PI);
        for (int64_t r = 0; r < M; ++r)
          for (int64_t j = 0; j < c.K; ++j) {
            double acc = 0;
            for (int64_t n = 0; n < c.N; ++n)
              acc += gv[size_t(r * c.N + n)] * wv[size_t(n * c.K + j)];
            if (pre.defined()) {
              const double v = pv[size_t(r * c.K + j)], u = k * (v + 0.044715 * v * v * v);
              const double t = std::tanh(u);
              acc *= 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v);
            }
            gx[size_t(r * c.K + j)] = acc;
            gb[size_t(j)] += acc;
          }
        INFO(dtype_name(dt) << " lead " << shape_str(c.lead) << " N " << c.N << " K " << c.K
                            << " form " << form);
        REQUIRE(g.gx.shape() == ps);
        REQUIRE(rel_err(g.gx, test::host(gx, ps)) < tol(dt));
        REQUIRE(g.gb.defined() == (form == 2));
        if (form == 2) REQUIRE(rel_err(g.gb, test::host(gb, {c.K})) < tol(dt));
      }
  Tensor gy = rnd({4, 6}, DType::f32, device, 1), w = rnd({6, 5}, DType::f32, device, 2);
  REQUIRE_THROWS_WITH(ops::linear_input_grad(gy, w, Tensor(), true),
                      Contains("linear_input_grad") && Contains("pre"));
  REQUIRE_THROWS_WITH(ops::linear_input_grad(gy, rnd({5, 6}, DType::f32, device, 3), Tensor(), false),
                      Contains("linear_input_grad") && Contains("do not fit"));
  REQUIRE_THROWS_WITH(ops::linear_input_grad(gy, w, rnd({4, 6}, DType::f32, device, 4), false),
                      Contains("linear_input_grad") && Contains("pre [4, 6] must be [4, 5]"));
}

FG_TEST_ALL_DEVICES("linear_gelu_linear matches linear, gelu and linear chained",
                    "[linear][grad]") {
  // The MLP node: values and all five gradients against the chain of separate nodes, in f32 (on
  // the epilogue path on CUDA) and bf16; and a gradcheck in f64, with and without biases.
  for (DType dt : {DType::f32, DType::bf16}) {
    auto leaves = [&](uint64_t seed) {
      return std::vector<Tensor>{test::leaf({2, 8, 32}, device, dt, seed),
                                 test::leaf({64, 32}, device, dt, seed + 1),
                                 test::leaf({64}, device, dt, seed + 2),
                                 test::leaf({32, 64}, device, dt, seed + 3),
                                 test::leaf({32}, device, dt, seed + 4)};
    };
    std::vector<Tensor> a = leaves(1), b = leaves(1);
    Tensor g = rnd({2, 8, 32}, dt, device, 9);
    Tensor ya = fg::linear_gelu_linear(a[0], a[1], a[2], a[3], a[4]);
    Tensor yb = fg::linear(fg::gelu(fg::linear(b[0], b[1], b[2])), b[3], b[4]);
    ya.backward(g);
    yb.backward(g);
    const double t = dt == DType::f32 ? 1e-5 : 2e-2;
    INFO(dtype_name(dt));
    REQUIRE(rel_err(ya, yb) < t);
    for (size_t i = 0; i < a.size(); ++i) {
      INFO("input " << i);
      REQUIRE(rel_err(a[i].grad(), b[i].grad()) < t);
    }
  }
  using test::leaf;
  test::require_gradcheck(
      [](const std::vector<Tensor>& in) {
        return fg::linear_gelu_linear(in[0], in[1], in[2], in[3], in[4]);
      },
      {leaf({2, 3, 4}, device, DType::f64, 1), leaf({6, 4}, device, DType::f64, 2),
       leaf({6}, device, DType::f64, 3), leaf({5, 6}, device, DType::f64, 4),
       leaf({5}, device, DType::f64, 5)});
  test::require_gradcheck(
      [](const std::vector<Tensor>& in) {
        return fg::linear_gelu_linear(in[0], in[1], Tensor(), in[2], Tensor());
      },
      {leaf({3, 4}, device, DType::f64, 6), leaf({6, 4}, device, DType::f64, 7),
       leaf({5, 6}, device, DType::f64, 8)});
}

FG_TEST_ALL_DEVICES("linear gradcheck: with and without bias and GELU", "[linear][grad]") {
  using test::leaf;
  for (bool gelu : {false, true}) {
    test::require_gradcheck(
        [gelu](const std::vector<Tensor>& in) { return fg::linear(in[0], in[1], in[2], gelu); },
        {leaf({2, 3, 5}, device, DType::f64, 1), leaf({4, 5}, device, DType::f64, 2),
         leaf({4}, device, DType::f64, 3)});
    test::require_gradcheck(
        [gelu](const std::vector<Tensor>& in) { return fg::linear(in[0], in[1], Tensor(), gelu); },
        {leaf({3, 5}, device, DType::f64, 4), leaf({6, 5}, device, DType::f64, 5)});
  }
}

FG_TEST_ALL_DEVICES("the fused linear node matches matmul + add + gelu", "[linear][grad]") {
  // Values and all three gradients of the fused node against the unfused chain, in f32 (a
  // shape on cuBLASLt's epilogue path on CUDA) and bf16.
  for (DType dt : {DType::f32, DType::bf16})
    for (bool gelu : {false, true}) {
      Tensor x1 = test::leaf({4, 8, 32}, device, dt, 1), w1 = test::leaf({48, 32}, device, dt, 2);
      Tensor b1 = test::leaf({48}, device, dt, 3);
      Tensor x2 = test::leaf({4, 8, 32}, device, dt, 1), w2 = test::leaf({48, 32}, device, dt, 2);
      Tensor b2 = test::leaf({48}, device, dt, 3);
      Tensor g = rnd({4, 8, 48}, dt, device, 4);
      Tensor y1 = fg::linear(x1, w1, b1, gelu);
      Tensor y2 = fg::matmul(x2, fg::transpose(w2, 0, 1)) + b2;
      if (gelu) y2 = fg::gelu(y2);
      y1.backward(g);
      y2.backward(g);
      INFO(dtype_name(dt) << " gelu " << gelu);
      // bf16: the chain rounds between its ops, the fused node once.
      const double t = dt == DType::f32 ? 1e-5 : 2e-2;
      REQUIRE(rel_err(y1, y2) < t);
      REQUIRE(rel_err(x1.grad(), x2.grad()) < t);
      REQUIRE(rel_err(w1.grad(), w2.grad()) < t);
      REQUIRE(rel_err(b1.grad(), b2.grad()) < t);
    }
}

FG_TEST_ALL_DEVICES("linear errors name the op and what is wrong", "[linear]") {
  Tensor x = rnd({3, 4}, DType::f32, device, 1), w = rnd({5, 4}, DType::f32, device, 2);
  REQUIRE_THROWS_WITH(ops::linear(x, rnd({5, 3}, DType::f32, device, 3), Tensor(), false),
                      Contains("linear") && Contains("in_features=3"));
  REQUIRE_THROWS_WITH(ops::linear(x, rnd({20}, DType::f32, device, 3), Tensor(), false),
                      Contains("weight must be [out_features, in_features]"));
  REQUIRE_THROWS_WITH(ops::linear(x, w, rnd({4}, DType::f32, device, 3), false),
                      Contains("bias must be [5]"));
  REQUIRE_THROWS_WITH(ops::linear(x, w, rnd({5}, DType::f64, device, 3), false),
                      Contains("bias dtype f64"));
  REQUIRE_THROWS_WITH(ops::linear(ops::to_dtype(x, DType::bf16), w, Tensor(), false),
                      Contains("linear"));
  REQUIRE_THROWS_WITH(ops::linear(ops::to_dtype(x, DType::i32), ops::to_dtype(w, DType::i32),
                                  Tensor(), false),
                      Contains("linear"));
  REQUIRE_THROWS_WITH(ops::linear_weight_grad(rnd({2, 5}, DType::f32, device, 4), x, true),
                      Contains("linear_weight_grad") && Contains("all dims but the last"));
  if (device.is_cuda()) {
    REQUIRE_THROWS_WITH(ops::linear(x, ops::to_device(w, Device::cpu()), Tensor(), false),
                        Contains("linear") && Contains("cpu") && Contains("cuda"));
  }
}

FG_TEST_ALL_DEVICES("linear_residual adds the residual in the layer's one pass", "[linear]") {
  // With and without a bias, every float dtype; on CUDA the 16-bit and fp32 cases take
  // cuBLASLt's beta = 1 path, f64 the fallback. Odd sizes: the row length is not a multiple
  // of anything.
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16})
    for (bool bias : {true, false}) {
      INFO(dtype_name(dt) << (bias ? " with" : " without") << " a bias");
      Tensor x = rnd({2, 3, 40}, dt, device, 11), w = rnd({24, 40}, dt, device, 12);
      Tensor b = bias ? rnd({24}, dt, device, 13) : Tensor(), r = rnd({2, 3, 24}, dt, device, 14);
      const Tensor y = ops::linear_residual(x, w, b, r);
      REQUIRE(y.shape() == Shape{2, 3, 24});
      // The double reference: x w^T + b, plus r.
      const Ref ref = ref_linear(x, w, b, false);
      const Tensor expect = ops::add(ref.y, ops::to_dtype(r.to(Device::cpu()), DType::f64));
      CHECK(rel_err(y, expect) < tol(dt));
    }
  Tensor x = rnd({4, 8}, DType::f32, device, 1), w = rnd({5, 8}, DType::f32, device, 2);
  CHECK_THROWS_WITH(ops::linear_residual(x, w, Tensor(), rnd({4, 6}, DType::f32, device, 3)),
                    Contains("residual") && Contains("must match the output"));
  CHECK_THROWS_WITH(ops::linear_residual(x, w, Tensor(), Tensor()), Contains("undefined"));
}
