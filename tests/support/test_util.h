// Helpers shared by the tests: relative errors, tolerances, random inputs (host values and
// leaves), poisoned allocator caches, gradchecks, and one body for every device.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
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

// The relative error an op's result may have in dtype t (against a double reference on the
// values the op saw): rounding only, exact for integers.
inline double tol(DType t) {
  switch (t) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-5;
    case DType::i32: case DType::i64: return 0;
    default: return 1e-2;
  }
}

// out against the reference ref within tol(dt); exact for integer dtypes.
inline void require_close(const Tensor& out, const Tensor& ref, DType dt) {
  REQUIRE(out.shape() == ref.shape());
  double e = rel_err(out, ref);
  INFO("dtype " << dtype_name(dt) << " rel_err " << e);
  if (tol(dt) == 0) REQUIRE(max_abs_diff(out, ref) == 0);
  else REQUIRE(e < tol(dt));
}

// Host values (row-major) as an f64 CPU tensor: a reference to compare with.
inline Tensor host(const std::vector<double>& v, const Shape& s) {
  return from_vector<double>(v, s, TensorOptions(DType::f64));
}

// Host values (row-major) -> a tensor of dtype dt on device d (through f64 on the CPU).
inline Tensor make(const std::vector<double>& v, const Shape& s, DType dt, Device d) {
  return ops::to_device(ops::to_dtype(host(v, s), dt), d);
}

// n draws of `dist` from a host generator (mt19937_64) independent of the library's.
template <typename Dist>
std::vector<double> host_draws(int64_t n, uint64_t seed, Dist dist) {
  std::mt19937_64 rng(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// Uniform values in [lo, hi).
inline std::vector<double> uniform(int64_t n, uint64_t seed, double lo, double hi) {
  return host_draws(n, seed, std::uniform_real_distribution<double>(lo, hi));
}

// Small integers in [lo, hi]: exact in every dtype, and ties are common (for eq/max tests).
inline std::vector<double> small_ints(int64_t n, uint64_t seed, int lo, int hi) {
  return host_draws(n, seed, std::uniform_int_distribution<int>(lo, hi));
}

// Fresh values of shape s as dtype dt on device d: uniform in [lo, hi) for a floating dtype,
// small_ints in [lo, hi] for an integer one.
inline Tensor rnd(const Shape& s, DType dt, Device d, uint64_t seed, double lo = -2, double hi = 2) {
  if (!is_floating(dt)) return make(small_ints(shape_numel(s), seed, int(lo), int(hi)), s, dt, d);
  return make(uniform(shape_numel(s), seed, lo, hi), s, dt, d);
}

// Leaves NaN-filled blocks (64 to max_n floats) in the allocator's cache, so that an output
// element a kernel forgets to write reads as NaN rather than a lucky zero.
inline void poison(Device d, int64_t max_n = 1 << 16) {
  for (int64_t n = 64; n <= max_n; n *= 4)
    Tensor p = full({n}, NAN, TensorOptions(DType::f32).device(d));
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
