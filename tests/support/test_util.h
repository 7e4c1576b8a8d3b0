// Helpers shared by the tests: relative errors, random inputs, and one body for every device.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "tensor/tensor.h"

namespace fg::test {

// ||out - ref|| / ||ref|| computed in double on the host (ref may be all zeros: then ||out||).
inline double rel_err(const Tensor& out, const Tensor& ref) {
  REQUIRE(out.shape() == ref.shape());
  auto o = out.to_vector<double>();
  auto r = ref.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    if (std::isnan(o[i]) || std::isnan(r[i])) return INFINITY;
    num += (o[i] - r[i]) * (o[i] - r[i]);
    den += r[i] * r[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.to_vector<double>();
  auto y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = std::fabs(x[i] - y[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

// A leaf of uniform values in [lo, hi) that requires grad (fresh values from `seed`).
inline Tensor leaf(const Shape& s, Device d, DType t = DType::f64, uint64_t seed = 1,
                   double lo = -1, double hi = 1) {
  Generator g(seed);
  Tensor x = rand(s, TensorOptions(t).device(d), &g);
  x = ops::add_scalar(ops::mul_scalar(x, hi - lo), lo);
  x.set_requires_grad(true);
  return x;
}

inline void require_gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                              GradcheckOptions opt = {}) {
  GradcheckResult r = gradcheck(fn, inputs, opt);
  INFO(r.message);
  REQUIRE(r.ok);
}

}  // namespace fg::test

// FG_TEST_ALL_DEVICES("name", "[tags]") { ... uses `device` ... }
// Registers the body as a CPU test case and, in CUDA builds, as a [cuda] test case.
#define FG_CAT2(a, b) a##b
#define FG_CAT(a, b) FG_CAT2(a, b)
#ifdef FLASHGRAD_WITH_CUDA
#define FG_TEST_ALL_DEVICES_IMPL(BODY, NAME, TAGS)                                   \
  static void BODY(fg::Device device);                                               \
  TEST_CASE(NAME " (cpu)", TAGS) { BODY(fg::Device::cpu()); }                        \
  TEST_CASE(NAME " (cuda)", TAGS "[cuda]") { BODY(fg::Device::cuda(0)); }            \
  static void BODY(fg::Device device)
#else
#define FG_TEST_ALL_DEVICES_IMPL(BODY, NAME, TAGS)                                   \
  static void BODY(fg::Device device);                                               \
  TEST_CASE(NAME " (cpu)", TAGS) { BODY(fg::Device::cpu()); }                        \
  static void BODY(fg::Device device)
#endif
#define FG_TEST_ALL_DEVICES(NAME, TAGS) \
  FG_TEST_ALL_DEVICES_IMPL(FG_CAT(fg_test_body_, __LINE__), NAME, TAGS)
