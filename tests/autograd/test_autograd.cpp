// The autograd engine: accumulation, shared inputs, no_grad, detach, freed graphs, and the
// gradients of views and copies.
#include "support/test_util.h"

using namespace fg;
using fg::test::leaf;
using fg::test::require_gradcheck;

FG_TEST_ALL_DEVICES("gradients accumulate over uses and over backward calls", "[autograd]") {
  Tensor x = leaf({3}, device);
  Tensor y = (x * x + x).sum();  // dy/dx = 2x + 1
  y.backward();
  auto xv = x.to_vector<double>();
  auto g = x.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) CHECK(g[i] == Approx(2 * xv[i] + 1));
  (x * 3.0).sum().backward();  // accumulates 3
  auto g2 = x.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) CHECK(g2[i] == Approx(2 * xv[i] + 4));
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

FG_TEST_ALL_DEVICES("a diamond graph sums both paths", "[autograd]") {
  Tensor x = leaf({4}, device);
  Tensor a = x * 2.0;
  Tensor b = a * a;  // 4x^2
  Tensor c = a + b;  // 2x + 4x^2
  c.sum().backward();
  auto xv = x.to_vector<double>();
  auto g = x.grad().to_vector<double>();
  for (size_t i = 0; i < 4; ++i) CHECK(g[i] == Approx(2 + 8 * xv[i]));
}

TEST_CASE("a second backward through a freed graph is a clear error", "[autograd]") {
  Tensor x = leaf({2}, Device::cpu());
  Tensor y = (x * x).sum();
  y.backward();
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("a second time"));
  Tensor z = (x * x).sum();
  z.backward(Tensor(), /*retain_graph=*/true);
  REQUIRE_NOTHROW(z.backward());
}

TEST_CASE("no_grad and detach stop recording", "[autograd]") {
  Tensor x = leaf({3}, Device::cpu());
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
  }
  CHECK((x * 2.0).requires_grad());
  Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.same_storage(x));
  REQUIRE_THROWS_WITH(d.sum().backward(), Catch::Contains("does not require grad"));
  REQUIRE_THROWS_WITH((x * 2.0).backward(), Catch::Contains("scalar output"));
  REQUIRE_THROWS_WITH(arange(3).set_requires_grad(true), Catch::Contains("floating"));
}

TEST_CASE("backward with an explicit gradient", "[autograd]") {
  Tensor x = leaf({2, 2}, Device::cpu());
  Tensor y = x * 3.0;
  y.backward(full({2, 2}, 0.5, DType::f64));
  for (double v : x.grad().to_vector<double>()) CHECK(v == Approx(1.5));
  REQUIRE_THROWS_WITH((x * 1.0).backward(ones({4}, DType::f64)), Catch::Contains("grad_output"));
}

TEST_CASE("saved bytes count each storage once", "[autograd]") {
  Tensor x = leaf({1000}, Device::cpu());
  Tensor y = exp(x);       // saves its output y (8000 B)
  Tensor z = (y * y).sum();  // saves y again (same storage)
  CHECK(saved_bytes_for_backward(z) == 8000);
}

FG_TEST_ALL_DEVICES("gradcheck: views and copies", "[autograd][gradcheck]") {
  Tensor x = leaf({2, 3, 4}, device);
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].transpose(0, 2) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].permute({1, 2, 0}).contiguous(); }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].reshape({4, 6}) * 2.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].view({6, 4}) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].slice(2, 1, 4, 2) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].narrow(1, 1, 2) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].select(0, 1) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].unsqueeze(1).squeeze(1) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].flatten(0, 1) * 1.0; }, {x});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].clone(); }, {x});
  Tensor b = leaf({3, 1}, device);
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].expand({2, 3, 4}) * 1.0; }, {b});
  require_gradcheck([](const std::vector<Tensor>& in) { return in[0].to(DType::f32).to(DType::f64); }, {b},
                    GradcheckOptions{1e-3, 1e-4, 1e-3});
}

TEST_CASE("gradcheck catches a wrong gradient", "[autograd][gradcheck]") {
  // A deliberately wrong backward: claims d(2x)/dx = 3.
  auto wrong = [](const std::vector<Tensor>& in) {
    Tensor y = ops::mul_scalar(in[0], 2.0);
    return record("WrongBackward", {in[0]}, y, {},
                  [](const std::vector<Tensor>& g, const std::vector<Tensor>&, const std::vector<bool>&) {
                    return std::vector<Tensor>{ops::mul_scalar(g[0], 3.0)};
                  });
  };
  GradcheckResult r = gradcheck(wrong, {leaf({3}, Device::cpu())});
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.message, Catch::Contains("analytic 3"));
  REQUIRE_THROWS_WITH(gradcheck(wrong, {leaf({3}, Device::cpu(), DType::f32)}), Catch::Contains("f64"));
}

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("gradients flow across devices", "[autograd][cuda]") {
  Tensor x = leaf({5}, Device::cpu());
  Tensor y = (x.to(Device::cuda()) * 2.0).sum();
  y.backward();
  CHECK(x.grad().device().is_cpu());
  for (double v : x.grad().to_vector<double>()) CHECK(v == Approx(2.0));
}
#endif

TEST_CASE("the gradient-ready hook sees each leaf once, with its final gradient, in the order "
          "the backward finishes them", "[autograd]") {
  Tensor a = leaf({3}, Device::cpu(), DType::f64, 1), b = leaf({3}, Device::cpu(), DType::f64, 2);
  Tensor unused = leaf({3}, Device::cpu(), DType::f64, 3);
  std::vector<std::pair<TensorImpl*, std::vector<double>>> seen;
  {
    GradReadyHookGuard guard([&](const Tensor& l) {
      seen.emplace_back(l.impl_ptr().get(), l.grad().to_vector<double>());
    });
    // a is used early and twice (its gradient is the sum of two), b only at the end: b's
    // gradient is finished first.
    Tensor h = a * a + a;
    Tensor y = (h * b).sum();
    y.backward();
  }
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first == b.impl_ptr().get());
  CHECK(seen[1].first == a.impl_ptr().get());
  CHECK(seen[0].second == b.grad().to_vector<double>());
  CHECK(seen[1].second == a.grad().to_vector<double>());
  CHECK_FALSE(unused.grad().defined());
  // The guard restored "no hook": a later backward reports nothing.
  (a * b).sum().backward();
  CHECK(seen.size() == 2);
}
