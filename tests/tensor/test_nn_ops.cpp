// Tests of the neural-network ops: softmax / log-softmax, cross-entropy, LayerNorm, embedding,
// dropout, gather / scatter-add, cat / split / chunk. Forward and backward of each against
// plain double loops on the host values the op saw, in f32, f64 and bf16, on every device;
// out-of-range target / index errors; dropout statistics and the CPU/CUDA mask identity;
// gradchecks of every differentiable op; shape, dtype and device errors.
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "core/philox.h"
#include "support/test_util.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::host;
using test::leaf;
using test::make;
using test::poison;
using test::rel_err;
using test::require_gradcheck;
using test::rnd;
using test::tol;
using test::uniform;

namespace {

const DType kDTypes[] = {DType::f32, DType::f64, DType::bf16};

Tensor ints(const std::vector<int64_t>& v, const Shape& s, DType dt, Device d) {
  Tensor t = from_vector<int64_t>(v, s, TensorOptions(DType::i64));
  return ops::to_device(ops::to_dtype(t, dt), d);
}
std::vector<int64_t> rand_ints(int64_t n, uint64_t seed, int64_t lo, int64_t hi) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> u(lo, hi - 1);
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// ---- references (double loops over rows of the last dim) ----
std::vector<double> ref_softmax(const std::vector<double>& x, int64_t cols, bool log) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r * cols < x.size(); ++r) {
    const double* xr = x.data() + r * cols;
    double m = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, xr[c]);
    if (m == -INFINITY) m = 0;
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += std::exp(xr[c] - m);
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] = log ? (s > 0 ? xr[c] - m - std::log(s) : -INFINITY)
                            : (s > 0 ? std::exp(xr[c] - m) / s : 0.0);
  }
  return y;
}

}  // namespace

// =======================================================================================
// softmax

FG_TEST_ALL_DEVICES("softmax and log_softmax match the reference", "[nn][softmax]") {
  const Shape shapes[] = {{7, 33}, {4, 1}, {2, 3, 1000}, {64, 64}, {5}};
  for (DType dt : kDTypes)
    for (const Shape& s : shapes)
      for (bool log : {false, true}) {
        Tensor x = rnd(s, dt, device, uint64_t(shape_numel(s)), -4, 4);
        poison(device);
        Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
        auto ref = ref_softmax(x.to_vector<double>(), s.back(), log);
        INFO(dtype_name(dt) << " " << shape_str(s) << " log=" << log);
        REQUIRE(y.shape() == s);
        REQUIRE(rel_err(y, host(ref, s)) < tol(dt));
      }
}

FG_TEST_ALL_DEVICES("softmax of masked rows: -inf entries get 0, an all -inf row gives 0",
                    "[nn][softmax]") {
  std::vector<double> v = uniform(3 * 6, 1, -2, 2);
  v[1] = v[4] = -INFINITY;                           // row 0: two masked keys
  for (int c = 0; c < 6; ++c) v[size_t(6 + c)] = -INFINITY;  // row 1: every key masked
  Tensor x = make(v, {3, 6}, DType::f32, device);
  auto y = ops::softmax(x).to_vector<double>();
  auto ref = ref_softmax(x.to_vector<double>(), 6, false);
  for (size_t i = 0; i < y.size(); ++i) {
    REQUIRE(!std::isnan(y[i]));
    REQUIRE(std::fabs(y[i] - ref[i]) < 1e-6);
  }
  REQUIRE(y[1] == 0.0);
  for (int c = 0; c < 6; ++c) REQUIRE(y[size_t(6 + c)] == 0.0);
}

FG_TEST_ALL_DEVICES("softmax_backward matches the reference", "[nn][softmax]") {
  for (DType dt : kDTypes)
    for (bool log : {false, true}) {
      const int64_t R = 5, C = 37;
      Tensor x = rnd({R, C}, dt, device, 1);
      Tensor y = log ? ops::log_softmax(x) : ops::softmax(x);
      Tensor gy = rnd({R, C}, dt, device, 2);
      poison(device);
      Tensor gx = ops::softmax_backward(y, gy, log);
      auto yv = y.to_vector<double>(), gv = gy.to_vector<double>();
      std::vector<double> ref(yv.size());
      for (int64_t r = 0; r < R; ++r) {
        double s = 0;
        for (int64_t c = 0; c < C; ++c)
          s += log ? gv[size_t(r * C + c)] : gv[size_t(r * C + c)] * yv[size_t(r * C + c)];
        for (int64_t c = 0; c < C; ++c) {
          size_t i = size_t(r * C + c);
          ref[i] = log ? gv[i] - std::exp(yv[i]) * s : yv[i] * (gv[i] - s);
        }
      }
      INFO(dtype_name(dt) << " log=" << log);
      REQUIRE(rel_err(gx, host(ref, {R, C})) < tol(dt) * (dt == DType::f64 ? 1 : 2));
    }
}

FG_TEST_ALL_DEVICES("softmax works on non-contiguous input and rejects other dims",
                    "[nn][softmax]") {
  Tensor base = rnd({9, 6}, DType::f64, device, 3);
  Tensor xt = ops::transpose(base, 0, 1);  // [6, 9], non-contiguous
  Tensor y = fg::softmax(xt, -1);
  auto ref = ref_softmax(xt.to_vector<double>(), 9, false);
  REQUIRE(rel_err(y, host(ref, {6, 9})) < 1e-12);
  REQUIRE_THROWS_WITH(fg::softmax(base, 0), Contains("softmax") && Contains("last dim"));
  REQUIRE_THROWS_WITH(fg::log_softmax(base, 0), Contains("log_softmax") && Contains("last dim"));
  REQUIRE_THROWS_WITH(ops::softmax(ints({1, 2}, {2}, DType::i64, device)),
                      Contains("softmax") && Contains("i64"));
  REQUIRE_THROWS_WITH(ops::softmax_backward(rnd({2, 3}, DType::f32, device, 1),
                                            rnd({3, 2}, DType::f32, device, 2), false),
                      Contains("softmax_backward") && Contains("[2, 3]") && Contains("[3, 2]"));
}

FG_TEST_ALL_DEVICES("softmax and log_softmax gradcheck", "[nn][softmax][grad]") {
  require_gradcheck([](const std::vector<Tensor>& x) { return fg::softmax(x[0], -1); },
                    {leaf({3, 5}, device, DType::f64, 1)});
  require_gradcheck([](const std::vector<Tensor>& x) { return fg::log_softmax(x[0], 2); },
                    {leaf({2, 2, 4}, device, DType::f64, 2)});
  // Through a transposed (non-contiguous) input and a non-contiguous upstream gradient.
  require_gradcheck(
      [](const std::vector<Tensor>& x) {
        return fg::transpose(fg::softmax(fg::transpose(x[0], 0, 1), -1), 0, 1);
      },
      {leaf({4, 3}, device, DType::f64, 3)});
}

// =======================================================================================
// cross-entropy

namespace {
// Per-row losses and the mean over counted rows, in double.
double ref_cross_entropy(const std::vector<double>& x, const std::vector<int64_t>& t,
                         int64_t C, int64_t ignore, int64_t& count) {
  double total = 0;
  count = 0;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore) continue;
    const double* xr = x.data() + r * C;
    double m = -INFINITY;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, xr[c]);
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += std::exp(xr[c] - m);
    total += m + std::log(s) - xr[t[r]];
    ++count;
  }
  return count ? total / double(count) : 0.0;
}
std::vector<double> ref_cross_entropy_grad(const std::vector<double>& x,
                                           const std::vector<int64_t>& t, int64_t C,
                                           int64_t ignore, double scale) {
  std::vector<double> g(x.size(), 0.0);
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore) continue;
    auto p = ref_softmax(std::vector<double>(x.begin() + r * C, x.begin() + (r + 1) * C), C,
                         false);
    for (int64_t c = 0; c < C; ++c) g[r * C + c] = (p[c] - (c == t[r] ? 1.0 : 0.0)) * scale;
  }
  return g;
}
}  // namespace

FG_TEST_ALL_DEVICES("cross_entropy forward and backward match the reference, i32 and i64 targets",
                    "[nn][cross_entropy]") {
  for (DType dt : kDTypes)
    for (DType tdt : {DType::i32, DType::i64})
      for (int64_t C : {5, 1000}) {
        const int64_t N = 13, ignore = -100;
        Tensor x = rnd({N, C}, dt, device, uint64_t(C), -3, 3);
        std::vector<int64_t> tv = rand_ints(N, uint64_t(C + 1), 0, C);
        tv[2] = tv[7] = ignore;
        Tensor t = ints(tv, {N}, tdt, device);
        poison(device);
        int64_t count = -1, ref_count = 0;
        Tensor loss = ops::cross_entropy(x, t, ignore, &count);
        auto xv = x.to_vector<double>();
        double ref = ref_cross_entropy(xv, tv, C, ignore, ref_count);
        INFO(dtype_name(dt) << " targets " << dtype_name(tdt) << " C=" << C);
        REQUIRE(loss.dim() == 0);
        REQUIRE(loss.dtype() == DType::f32);
        REQUIRE(loss.device() == device);
        REQUIRE(count == ref_count);
        REQUIRE(count == N - 2);
        // The loss is fp32 whatever the logits' dtype.
        REQUIRE(std::fabs(loss.item() - ref) / std::fabs(ref) < 1e-5);

        double scale = 0.7 / double(count);
        Tensor gs = full({}, scale, TensorOptions(DType::f32).device(device));
        poison(device);
        Tensor g = ops::cross_entropy_backward(x, t, ignore, gs);
        auto gref = ref_cross_entropy_grad(xv, tv, C, ignore, double(float(scale)));
        REQUIRE(g.dtype() == dt);
        REQUIRE(rel_err(g, host(gref, {N, C})) < std::max(tol(dt), 1e-6));
        // Ignored rows get exactly zero gradient.
        auto gv = g.to_vector<double>();
        for (int64_t c = 0; c < C; ++c) REQUIRE(gv[size_t(2 * C + c)] == 0.0);
      }
}

FG_TEST_ALL_DEVICES("cross_entropy autograd: [B, T, C] logits, custom ignore_index",
                    "[nn][cross_entropy][grad]") {
  const int64_t B = 2, T = 3, C = 7;
  Tensor x = leaf({B, T, C}, device, DType::f32, 5, -2, 2);
  std::vector<int64_t> tv = {1, 6, 3, 0, 3, 2};
  Tensor t = ints(tv, {B, T}, DType::i64, device);
  Tensor loss = fg::cross_entropy(x, t, /*ignore_index=*/3);
  int64_t count;
  auto xv = x.to_vector<double>();
  double ref = ref_cross_entropy(xv, tv, C, 3, count);
  REQUIRE(count == 4);
  REQUIRE(std::fabs(loss.item() - ref) < 1e-5 * std::fabs(ref));
  (loss * 2.0).backward();
  auto gref = ref_cross_entropy_grad(xv, tv, C, 3, 2.0 / double(count));
  REQUIRE(x.grad().shape() == x.shape());
  REQUIRE(rel_err(x.grad(), host(gref, {B, T, C})) < 1e-5);
}

FG_TEST_ALL_DEVICES("cross_entropy gradcheck", "[nn][cross_entropy][grad]") {
  // The loss is fp32 by contract, so central differences need a larger step (1e-3: fp32
  // rounding of the loss then adds ~1e-4 to the numeric slope) and a matching tolerance;
  // wrong signs or scales (errors ~1e-1 here) still fail. The exact check is the test above.
  GradcheckOptions opt;
  opt.eps = 1e-3;
  opt.atol = 1e-3;
  opt.rtol = 1e-2;
  Tensor t = ints({2, -100, 0, 4}, {4}, DType::i32, device);
  require_gradcheck([t](const std::vector<Tensor>& x) { return fg::cross_entropy(x[0], t); },
                    {leaf({4, 5}, device, DType::f64, 7)}, opt);
}

FG_TEST_ALL_DEVICES("cross_entropy with every row ignored is 0 with zero gradient",
                    "[nn][cross_entropy]") {
  Tensor x = leaf({3, 4}, device, DType::f32, 1);
  Tensor t = ints({-100, -100, -100}, {3}, DType::i64, device);
  int64_t count = -1;
  REQUIRE(ops::cross_entropy(x, t, -100, &count).item() == 0.0);
  REQUIRE(count == 0);
  fg::cross_entropy(x, t).backward();
  for (double v : x.grad().to_vector<double>()) REQUIRE(v == 0.0);
}

FG_TEST_ALL_DEVICES("cross_entropy rejects out-of-range targets, naming row, value and range",
                    "[nn][cross_entropy]") {
  Tensor x = rnd({6, 5}, DType::f32, device, 1);
  // Rows 3 and 5 are bad; the first one is reported.
  Tensor t = ints({0, 4, 1, 7, 2, -3}, {6}, DType::i64, device);
  REQUIRE_THROWS_AS(ops::cross_entropy(x, t, -100), Error);
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, t, -100),
                      Contains("cross_entropy") && Contains("target 7") && Contains("row 3") &&
                          Contains("[0, 5)"));
  Tensor tn = ints({0, -3, 1, 2, 2, 1}, {6}, DType::i32, device);
  REQUIRE_THROWS_WITH(fg::cross_entropy(x, tn),
                      Contains("target -3") && Contains("row 1") && Contains("[0, 5)"));
  // Many bad rows spread over the grid: still the first.
  std::vector<int64_t> many(300, 9);
  many[0] = many[1] = 0;
  REQUIRE_THROWS_WITH(ops::cross_entropy(rnd({300, 5}, DType::f32, device, 2),
                                         ints(many, {300}, DType::i64, device), -100),
                      Contains("row 2 "));
}

FG_TEST_ALL_DEVICES("cross_entropy shape, dtype and device errors", "[nn][cross_entropy]") {
  Tensor x = rnd({4, 5}, DType::f32, device, 1);
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, ints({0, 1, 2}, {3}, DType::i64, device), -100),
                      Contains("cross_entropy") && Contains("[4, 5]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(ops::cross_entropy(x, rnd({4}, DType::f32, device, 2), -100),
                      Contains("cross_entropy") && Contains("i32 or i64"));
  REQUIRE_THROWS_WITH(fg::cross_entropy(rnd({2, 3, 5}, DType::f32, device, 3),
                                        ints({0, 1}, {2}, DType::i64, device)),
                      Contains("cross_entropy") && Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(
      ops::cross_entropy_backward(x, ints({0, 1, 2, 3}, {4}, DType::i64, device), -100,
                                  full({}, 1.0, TensorOptions(DType::f64).device(device))),
      Contains("grad_scale") && Contains("f32"));
  if (device.is_cuda())
    REQUIRE_THROWS_WITH(
        ops::cross_entropy(x, ints({0, 1, 2, 3}, {4}, DType::i64, Device::cpu()), -100),
        Contains("cross_entropy") && Contains("device"));
}

// =======================================================================================
// LayerNorm

namespace {
struct LnRef {
  std::vector<double> y, mean, rstd, gx, gw, gb;
};
LnRef ref_layer_norm(const std::vector<double>& x, const std::vector<double>* w,
                     const std::vector<double>* b, const std::vector<double>& gy, int64_t C,
                     double eps) {
  LnRef r;
  size_t R = x.size() / size_t(C);
  r.y.resize(x.size());
  r.gx.resize(x.size());
  r.gw.assign(size_t(C), 0.0);
  r.gb.assign(size_t(C), 0.0);
  for (size_t i = 0; i < R; ++i) {
    const double* xr = x.data() + i * C;
    const double* gr = gy.data() + i * C;
    double mu = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mu += xr[c];
    mu /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mu) * (xr[c] - mu);
    var /= double(C);
    double rs = 1.0 / std::sqrt(var + eps);
    r.mean.push_back(mu);
    r.rstd.push_back(rs);
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < C; ++c) {
      double xh = (xr[c] - mu) * rs;
      r.y[i * C + c] = xh * (w ? (*w)[c] : 1.0) + (b ? (*b)[c] : 0.0);
      double dxh = gr[c] * (w ? (*w)[c] : 1.0);
      s1 += dxh;
      s2 += dxh * xh;
      r.gw[c] += gr[c] * xh;
      r.gb[c] += gr[c];
    }
    for (int64_t c = 0; c < C; ++c) {
      double xh = (xr[c] - mu) * rs;
      double dxh = gr[c] * (w ? (*w)[c] : 1.0);
      r.gx[i * C + c] = rs * (dxh - s1 / double(C) - xh * s2 / double(C));
    }
  }
  return r;
}
}  // namespace

FG_TEST_ALL_DEVICES("layer_norm forward and backward match the reference, with and without affine",
                    "[nn][layer_norm]") {
  // CUDA: the fused backward (gx and the weight/bias partial sums in one pass) with 1 to 4
  // vectors per lane and warps that take several rows each: {4500, 768} (16-bit: 3 vectors),
  // {1030, 256} (bf16 1, f32 2, f64 4), {2000, 512} (bf16 2, f32 4); {40, 2048} is past its
  // row length in 16-bit types, so the gx and column-tile kernels run; {5, 37} takes the
  // block-per-row kernels. The forward holds a row in registers up to 8 vectors a lane (16
  // bytes each) and loops beyond: {7, 1280} and {3, 1792} (16-bit: 5 and 7 vectors) take the
  // register form's partly filled 6 and 8, {40, 2048} its full 8, f64 rows of 768 the loop;
  // {900, 384} and {70, 192} give f32 and f64 3 vectors a lane.
  const Shape shapes[] = {{5, 37},     {2, 3, 64},  {3, 1000},   {300, 24},  {4500, 768},
                          {40, 2048},  {1030, 256}, {2000, 512}, {7, 1280},  {3, 1792},
                          {900, 384},  {70, 192}};
  for (DType dt : kDTypes)
    for (const Shape& s : shapes)
      for (bool affine : {true, false}) {
        int64_t C = s.back(), R = shape_numel(s) / C;
        Tensor x = rnd(s, dt, device, uint64_t(C), -3, 5);  // a mean far from 0
        Tensor w = affine ? rnd({C}, dt, device, 2, 0.5, 1.5) : Tensor();
        Tensor b = affine ? rnd({C}, dt, device, 3) : Tensor();
        Tensor gy = rnd(s, dt, device, 4);
        poison(device);
        ops::LayerNormResult r = ops::layer_norm(x, w, b, 1e-5);
        std::vector<double> wv, bv;
        if (affine) {
          wv = w.to_vector<double>();
          bv = b.to_vector<double>();
        }
        LnRef ref = ref_layer_norm(x.to_vector<double>(), affine ? &wv : nullptr,
                                   affine ? &bv : nullptr, gy.to_vector<double>(), C, 1e-5);
        INFO(dtype_name(dt) << " " << shape_str(s) << " affine=" << affine);
        REQUIRE(r.y.shape() == s);
        REQUIRE(r.mean.dtype() == DType::f32);
        REQUIRE(r.mean.numel() == R);
        REQUIRE(rel_err(r.y, host(ref.y, s)) < tol(dt));
        REQUIRE(rel_err(r.mean, host(ref.mean, {R})) < 1e-6);
        REQUIRE(rel_err(r.rstd, host(ref.rstd, {R})) < 1e-6);
        poison(device);
        ops::LayerNormGrads g = ops::layer_norm_backward(gy, x, w, r.mean, r.rstd, true);
        // The backward uses the fp32 statistics saved by the forward, so even f64 gradients
        // are exact only to ~1e-7 relative.
        double gtol = dt == DType::f64 ? 1e-6 : (dt == DType::f32 ? 1e-5 : 2e-2);
        REQUIRE(rel_err(g.gx, host(ref.gx, s)) < gtol);
        REQUIRE(rel_err(g.gw, host(ref.gw, {C})) < gtol);
        REQUIRE(rel_err(g.gb, host(ref.gb, {C})) < gtol);
      }
  // Weight and bias views one element into their storage: not 16-byte aligned, so CUDA takes
  // the forms that read them an element at a time (the register forms read 16-byte vectors).
  for (DType dt : kDTypes) {
    const int64_t R = 64, C = 768;
    Tensor x = rnd({R, C}, dt, device, 11, -3, 5), gy = rnd({R, C}, dt, device, 12);
    Tensor w = rnd({C + 1}, dt, device, 13, 0.5, 1.5).narrow(0, 1, C);
    Tensor b = rnd({C + 1}, dt, device, 14).narrow(0, 1, C);
    std::vector<double> wv = w.to_vector<double>(), bv = b.to_vector<double>();
    LnRef ref = ref_layer_norm(x.to_vector<double>(), &wv, &bv, gy.to_vector<double>(), C, 1e-5);
    INFO(dtype_name(dt) << " misaligned weight and bias");
    ops::LayerNormResult r = ops::layer_norm(x, w, b, 1e-5);
    REQUIRE(rel_err(r.y, host(ref.y, {R, C})) < tol(dt));
    ops::LayerNormGrads g = ops::layer_norm_backward(gy, x, w, r.mean, r.rstd, true);
    const double gtol = dt == DType::f64 ? 1e-6 : (dt == DType::f32 ? 1e-5 : 2e-2);
    REQUIRE(rel_err(g.gx, host(ref.gx, {R, C})) < gtol);
    REQUIRE(rel_err(g.gw, host(ref.gw, {C})) < gtol);
    REQUIRE(rel_err(g.gb, host(ref.gb, {C})) < gtol);
  }
}

FG_TEST_ALL_DEVICES("layer_norm gradcheck with and without weight and bias", "[nn][layer_norm][grad]") {
  auto ln = [](const std::vector<Tensor>& x) { return fg::layer_norm(x[0], x[1], x[2], 1e-5); };
  require_gradcheck(ln, {leaf({3, 6}, device, DType::f64, 1), leaf({6}, device, DType::f64, 2),
                         leaf({6}, device, DType::f64, 3)});
  require_gradcheck([](const std::vector<Tensor>& x) {
    return fg::layer_norm(x[0], Tensor(), Tensor(), 1e-5);
  }, {leaf({2, 2, 5}, device, DType::f64, 4)});
  // Weight only (no bias), and bias only.
  require_gradcheck([](const std::vector<Tensor>& x) {
    return fg::layer_norm(x[0], x[1], Tensor(), 1e-5);
  }, {leaf({4, 3}, device, DType::f64, 5), leaf({3}, device, DType::f64, 6)});
  require_gradcheck([](const std::vector<Tensor>& x) {
    return fg::layer_norm(x[0], Tensor(), x[1], 1e-5);
  }, {leaf({4, 3}, device, DType::f64, 7), leaf({3}, device, DType::f64, 8)});
}

FG_TEST_ALL_DEVICES("layer_norm errors", "[nn][layer_norm]") {
  Tensor x = rnd({4, 6}, DType::f32, device, 1);
  REQUIRE_THROWS_WITH(ops::layer_norm(x, rnd({5}, DType::f32, device, 2), Tensor(), 1e-5),
                      Contains("layer_norm") && Contains("weight") && Contains("[6]") &&
                          Contains("[5]"));
  REQUIRE_THROWS_WITH(ops::layer_norm(x, rnd({6}, DType::f64, device, 3), Tensor(), 1e-5),
                      Contains("layer_norm") && Contains("f64"));
  REQUIRE_THROWS_WITH(ops::layer_norm(ints({1, 2}, {2}, DType::i32, device), Tensor(), Tensor(), 1e-5),
                      Contains("layer_norm") && Contains("i32"));
  if (device.is_cuda())
    REQUIRE_THROWS_WITH(ops::layer_norm(x, rnd({6}, DType::f32, Device::cpu(), 4), Tensor(), 1e-5),
                        Contains("layer_norm") && Contains("device"));
}

// =======================================================================================
// embedding

FG_TEST_ALL_DEVICES("embedding forward and backward match the reference", "[nn][embedding]") {
  for (DType dt : kDTypes)
    for (DType idt : {DType::i32, DType::i64}) {
      const int64_t V = 11, D = 37;
      Tensor w = rnd({V, D}, dt, device, 1);
      std::vector<int64_t> iv = {3, 0, 10, 3, 3, 7};  // repeats accumulate in the backward
      Tensor idx = ints(iv, {2, 3}, idt, device);
      poison(device);
      Tensor y = ops::embedding(w, idx);
      REQUIRE(y.shape() == Shape{2, 3, D});
      auto wv = w.to_vector<double>();
      std::vector<double> ref;
      for (int64_t i : iv)
        for (int64_t c = 0; c < D; ++c) ref.push_back(wv[size_t(i * D + c)]);
      INFO(dtype_name(dt) << " " << dtype_name(idt));
      REQUIRE(rel_err(y, host(ref, {2, 3, D})) == 0.0);  // a pure copy

      Tensor g = rnd({2, 3, D}, dt, device, 2);
      poison(device);
      Tensor gw = ops::embedding_backward(g, idx, V);
      auto gv = g.to_vector<double>();
      std::vector<double> gref(size_t(V * D), 0.0);
      for (size_t r = 0; r < iv.size(); ++r)
        for (int64_t c = 0; c < D; ++c) gref[size_t(iv[r] * D + c)] += gv[r * D + c];
      REQUIRE(gw.shape() == Shape{V, D});
      REQUIRE(rel_err(gw, host(gref, {V, D})) < tol(dt));
    }
}

FG_TEST_ALL_DEVICES("embedding rejects out-of-range ids and gradchecks", "[nn][embedding][grad]") {
  Tensor w = rnd({5, 3}, DType::f32, device, 1);
  REQUIRE_THROWS_WITH(ops::embedding(w, ints({1, 2, 5, 0}, {2, 2}, DType::i64, device)),
                      Contains("embedding") && Contains("index 5") && Contains("[1, 0]") &&
                          Contains("[0, 5)"));
  REQUIRE_THROWS_WITH(ops::embedding(w, ints({-1}, {1}, DType::i32, device)),
                      Contains("index -1") && Contains("[0, 5)"));
  REQUIRE_THROWS_WITH(ops::embedding(w, rnd({2}, DType::f32, device, 2)),
                      Contains("embedding") && Contains("i32 or i64"));
  REQUIRE_THROWS_WITH(ops::embedding(rnd({5}, DType::f32, device, 3),
                                     ints({1}, {1}, DType::i64, device)),
                      Contains("embedding") && Contains("[vocab, dim]"));
  if (device.is_cuda())
    REQUIRE_THROWS_WITH(ops::embedding(w, ints({1}, {1}, DType::i64, Device::cpu())),
                        Contains("embedding") && Contains("device"));
  Tensor idx = ints({2, 0, 2, 4}, {4}, DType::i64, device);
  require_gradcheck([idx](const std::vector<Tensor>& x) { return fg::embedding(x[0], idx); },
                    {leaf({5, 3}, device, DType::f64, 4)});
}

// =======================================================================================
// dropout

FG_TEST_ALL_DEVICES("dropout keeps about 1 - p, scales kept values by dropout_keep_scale(p)",
                    "[nn][dropout]") {
  for (DType dt : kDTypes)
    for (double p : {0.1, 0.5, 0.9}) {
      const int64_t n = 20011;
      Tensor x = rnd({n}, dt, device, 1, 0.5, 2.0);  // nonzero, so zeros mean dropped
      poison(device);
      Tensor y = ops::dropout(x, p, 1234, 7);
      auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
      int64_t kept = 0;
      double num = 0, den = 0;
      for (int64_t i = 0; i < n; ++i) {
        REQUIRE(!std::isnan(yv[size_t(i)]));
        if (yv[size_t(i)] == 0.0) continue;
        ++kept;
        double ref = xv[size_t(i)] * dropout_keep_scale(p);  // 1 / (1 - p rounded to 2^-16)
        num += (yv[size_t(i)] - ref) * (yv[size_t(i)] - ref);
        den += ref * ref;
      }
      double mean = double(n) * (1 - p), sigma = std::sqrt(double(n) * p * (1 - p));
      INFO(dtype_name(dt) << " p=" << p << " kept " << kept << " of " << n);
      REQUIRE(std::fabs(double(kept) - mean) < 5 * sigma);
      REQUIRE(std::sqrt(num / den) < (dt == DType::bf16 ? 1e-2 : 1e-6));
      // The mask is fg::dropout_keep (philox.h), element by element.
      uint32_t th = dropout_threshold(p);
      for (int64_t i = 0; i < n; i += 97)
        REQUIRE((yv[size_t(i)] != 0.0) == dropout_keep(1234, 7, uint64_t(i), th));
    }
}

FG_TEST_ALL_DEVICES("dropout mask depends on seed and offset only, and is the same on every device",
                    "[nn][dropout]") {
  Tensor x = rnd({33, 65}, DType::f32, device, 1, 1.0, 2.0);
  auto mask = [](const Tensor& y) {
    std::vector<bool> m;
    for (double v : y.to_vector<double>()) m.push_back(v != 0.0);
    return m;
  };
  auto a = mask(ops::dropout(x, 0.3, 99, 5));
  REQUIRE(a == mask(ops::dropout(x, 0.3, 99, 5)));
  REQUIRE(a != mask(ops::dropout(x, 0.3, 99, 6)));
  REQUIRE(a != mask(ops::dropout(x, 0.3, 100, 5)));
  // The CPU kernel is the reference: bitwise-equal values, so the same zero pattern.
  Tensor xc = ops::to_device(x, Device::cpu());
  Tensor yc = ops::dropout(xc, 0.3, 99, 5);
  REQUIRE(a == mask(yc));
  REQUIRE(test::max_abs_diff(ops::dropout(x, 0.3, 99, 5), yc) == 0.0);
  // Same for f64 and bf16 values.
  for (DType dt : {DType::f64, DType::bf16}) {
    Tensor xd = ops::to_dtype(x, dt);
    REQUIRE(test::max_abs_diff(ops::dropout(xd, 0.6, 3, 1),
                               ops::dropout(ops::to_device(xd, Device::cpu()), 0.6, 3, 1)) == 0.0);
  }
}

FG_TEST_ALL_DEVICES("dropout autograd: identity cases, generator offsets, gradient = mask * scale",
                    "[nn][dropout][grad]") {
  Tensor x = leaf({8, 9}, device, DType::f32, 1, 0.5, 1.5);
  REQUIRE(fg::dropout(x, 0.0).same_storage(x));
  REQUIRE(fg::dropout(x, 0.5, /*training=*/false).same_storage(x));
  REQUIRE_THROWS_WITH(fg::dropout(x, 1.0), Contains("dropout") && Contains("[0, 1)"));
  REQUIRE_THROWS_WITH(fg::dropout(x, -0.1), Contains("dropout") && Contains("[0, 1)"));
  REQUIRE_THROWS_WITH(ops::dropout(x, 1.5, 1, 1), Contains("dropout"));

  Generator gen(77);
  Tensor y1 = fg::dropout(x, 0.4, true, &gen);
  REQUIRE(gen.offset() == 1);
  Tensor y2 = fg::dropout(x, 0.4, true, &gen);
  REQUIRE(gen.offset() == 2);
  REQUIRE(test::max_abs_diff(y1, ops::dropout(x, 0.4, 77, 0)) == 0.0);
  REQUIRE(test::max_abs_diff(y1, y2) > 0.0);  // a fresh mask for each call

  Tensor g = rnd({8, 9}, DType::f32, device, 2);
  y1.backward(g);
  auto gv = g.to_vector<double>(), yv = y1.to_vector<double>(), gx = x.grad().to_vector<double>();
  for (size_t i = 0; i < gv.size(); ++i) {
    double expect = yv[i] != 0.0 ? gv[i] * double(float(dropout_keep_scale(0.4))) : 0.0;
    REQUIRE(std::fabs(gx[i] - expect) <= 1e-6 * std::fabs(expect));
  }
  // gradcheck with a generator made afresh at each call, so every evaluation uses one mask.
  require_gradcheck([](const std::vector<Tensor>& v) {
    Generator g2(5);
    return fg::dropout(v[0], 0.3, true, &g2);
  }, {leaf({4, 5}, device, DType::f64, 3)});
}

FG_TEST_ALL_DEVICES("dropout_add: residual + dropout(x) rounded once, the mask of dropout, "
                    "every kernel path", "[nn][dropout]") {
  // Lengths a multiple of 8 take the vector path on CUDA; 4099, 4100 and the views one element in
  // (unaligned) the scalar one. The CPU kernel is the reference: bitwise-equal results.
  for (DType dt : {DType::f32, DType::bf16, DType::f64, DType::f16})
    for (int64_t n : {int64_t(4096), int64_t(4099), int64_t(4100)})
      for (bool offset_view : {false, true}) {
        Tensor xb = rnd({n + 1}, dt, device, 1, 0.5, 2.0), rb = rnd({n + 1}, dt, device, 2);
        Tensor x = offset_view ? xb.narrow(0, 1, n) : xb.narrow(0, 0, n);
        Tensor r = offset_view ? rb.narrow(0, 1, n) : rb.narrow(0, 0, n);
        poison(device);
        Tensor y = ops::dropout_add(x, r, 0.25, 42, 3);
        Tensor d = ops::dropout(x, 0.25, 42, 3);
        Tensor yc = ops::dropout_add(ops::to_device(x, Device::cpu()),
                                     ops::to_device(r, Device::cpu()), 0.25, 42, 3);
        INFO(dtype_name(dt) << " n " << n << " offset view " << offset_view);
        REQUIRE(test::max_abs_diff(y, yc) == 0.0);
        REQUIRE(test::max_abs_diff(d, ops::dropout(ops::to_device(x, Device::cpu()), 0.25, 42, 3)) ==
                0.0);
        // Against the double reference: r + x / (1 - p) where kept (p = 0.25 is a multiple
        // of 2^-16: dropout_keep_scale is exactly 1 / 0.75), r where dropped.
        auto xv = x.to_vector<double>(), rv = r.to_vector<double>(), yv = y.to_vector<double>();
        const uint32_t th = dropout_threshold(0.25);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; ++i) {
          const bool keep = dropout_keep(42, 3, uint64_t(i), th);
          const double ref = rv[size_t(i)] + (keep ? xv[size_t(i)] / 0.75 : 0.0);
          num += (yv[size_t(i)] - ref) * (yv[size_t(i)] - ref);
          den += ref * ref;
          if (!keep) REQUIRE(yv[size_t(i)] == rv[size_t(i)]);
        }
        REQUIRE(std::sqrt(num / den) < test::tol(dt));
      }
  Tensor x = rnd({4, 4}, DType::f32, device, 3);
  REQUIRE_THROWS_WITH(ops::dropout_add(x, rnd({4, 5}, DType::f32, device, 4), 0.1, 1, 1),
                      Contains("dropout_add") && Contains("same shape"));
  REQUIRE_THROWS_WITH(ops::dropout_add(x, rnd({4, 4}, DType::f64, device, 4), 0.1, 1, 1),
                      Contains("dropout_add"));
}

FG_TEST_ALL_DEVICES("dropout_add autograd: the residual's gradient passes, x's is masked",
                    "[nn][dropout][grad]") {
  Tensor x = leaf({6, 8}, device, DType::f32, 1), r = leaf({6, 8}, device, DType::f32, 2);
  Generator gen(9);
  Tensor y = fg::dropout_add(x, r, 0.4, true, &gen);
  REQUIRE(gen.offset() == 1);
  REQUIRE(test::max_abs_diff(y, ops::dropout_add(x, r, 0.4, 9, 0)) == 0.0);
  Tensor g = rnd({6, 8}, DType::f32, device, 3);
  y.backward(g);
  REQUIRE(test::max_abs_diff(r.grad(), g) == 0.0);
  REQUIRE(test::max_abs_diff(x.grad(), ops::dropout(g, 0.4, 9, 0)) == 0.0);
  // Evaluation mode and p == 0: the plain sum.
  REQUIRE(test::max_abs_diff(fg::dropout_add(x, r, 0.4, false), ops::add(x, r)) == 0.0);
  REQUIRE(test::max_abs_diff(fg::dropout_add(x, r, 0.0), ops::add(x, r)) == 0.0);
  // The same shape and dtype rules in evaluation as in training: no broadcasting.
  Tensor row = leaf({1, 8}, device, DType::f32, 4);
  REQUIRE_THROWS_WITH(fg::dropout_add(row, r, 0.4, false), Contains("dropout_add") &&
                                                               Contains("same shape and dtype"));
  REQUIRE_THROWS_WITH(fg::dropout_add(row, r, 0.4, true), Contains("dropout_add"));
  require_gradcheck([](const std::vector<Tensor>& v) {
    Generator g2(5);
    return fg::dropout_add(v[0], v[1], 0.3, true, &g2);
  }, {leaf({4, 5}, device, DType::f64, 3), leaf({4, 5}, device, DType::f64, 4)});
}

// =======================================================================================
// gather / scatter_add

namespace {
// out[..., j, ...] = in[..., index[..., j, ...], ...] along dim, in double.
std::vector<double> ref_gather(const std::vector<double>& in, const Shape& in_shape, int64_t dim,
                               const std::vector<int64_t>& idx, const Shape& idx_shape) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= in_shape[size_t(d)];
  for (size_t d = size_t(dim) + 1; d < in_shape.size(); ++d) inner *= in_shape[d];
  int64_t L = in_shape[size_t(dim)], J = idx_shape[size_t(dim)];
  std::vector<double> out(idx.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < J; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t e = (o * J + j) * inner + i;
        out[size_t(e)] = in[size_t((o * L + idx[size_t(e)]) * inner + i)];
      }
  return out;
}
std::vector<double> ref_scatter_add(const std::vector<double>& src, const Shape& in_shape,
                                    int64_t dim, const std::vector<int64_t>& idx,
                                    const Shape& idx_shape) {
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= in_shape[size_t(d)];
  for (size_t d = size_t(dim) + 1; d < in_shape.size(); ++d) inner *= in_shape[d];
  int64_t L = in_shape[size_t(dim)], J = idx_shape[size_t(dim)];
  std::vector<double> out(size_t(shape_numel(in_shape)), 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < J; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        int64_t e = (o * J + j) * inner + i;
        out[size_t((o * L + idx[size_t(e)]) * inner + i)] += src[size_t(e)];
      }
  return out;
}
}  // namespace

FG_TEST_ALL_DEVICES("gather and scatter_add along every dim match the reference",
                    "[nn][gather]") {
  const Shape in_shape = {4, 5, 6};
  for (DType dt : kDTypes)
    for (int64_t dim : {0, 1, 2, -1})
      for (DType idt : {DType::i32, DType::i64}) {
        int64_t d = dim < 0 ? dim + 3 : dim;
        Shape idx_shape = in_shape;
        idx_shape[size_t(d)] = 7;  // longer than the input dim: repeats are certain
        Tensor x = rnd(in_shape, dt, device, uint64_t(d + 1));
        auto iv = rand_ints(shape_numel(idx_shape), uint64_t(d + 10), 0, in_shape[size_t(d)]);
        Tensor idx = ints(iv, idx_shape, idt, device);
        poison(device);
        Tensor y = ops::gather(x, dim, idx);
        INFO(dtype_name(dt) << " dim " << dim << " " << dtype_name(idt));
        REQUIRE(y.shape() == idx_shape);
        auto ref = ref_gather(x.to_vector<double>(), in_shape, d, iv, idx_shape);
        REQUIRE(rel_err(y, host(ref, idx_shape)) == 0.0);

        Tensor g = rnd(idx_shape, dt, device, 3);
        poison(device);
        Tensor gin = ops::scatter_add_zeros(g, dim, idx, in_shape);
        REQUIRE(gin.shape() == in_shape);
        auto sref = ref_scatter_add(g.to_vector<double>(), in_shape, d, iv, idx_shape);
        REQUIRE(rel_err(gin, host(sref, in_shape)) < tol(dt));
      }
}

FG_TEST_ALL_DEVICES("gather: integer data, non-contiguous input, errors, gradcheck",
                    "[nn][gather][grad]") {
  Tensor data = ints({10, 11, 12, 13, 14, 15}, {2, 3}, DType::i64, device);
  Tensor idx = ints({2, 2, 0, 1}, {2, 2}, DType::i64, device);
  REQUIRE(ops::gather(data, 1, idx).to_vector<int64_t>() == std::vector<int64_t>{12, 12, 13, 14});
  // Transposed input: gather along its dim 0 (the storage's dim 1).
  Tensor base = rnd({3, 4}, DType::f64, device, 1);
  Tensor xt = ops::transpose(base, 0, 1);  // [4, 3]
  std::vector<int64_t> iv = {3, 0, 1, 2, 2, 2};
  Tensor it = ints(iv, {2, 3}, DType::i32, device);
  auto ref = ref_gather(xt.to_vector<double>(), {4, 3}, 0, iv, {2, 3});
  REQUIRE(rel_err(ops::gather(xt, 0, it), host(ref, {2, 3})) == 0.0);

  Tensor x = rnd({3, 4}, DType::f32, device, 2);
  REQUIRE_THROWS_WITH(ops::gather(x, 1, ints({0, 4, 1}, {3, 1}, DType::i64, device)),
                      Contains("gather") && Contains("index 4") && Contains("[1, 0]") &&
                          Contains("[0, 4)"));
  REQUIRE_THROWS_WITH(ops::gather(x, 1, ints({0, 1}, {2, 1}, DType::i64, device)),
                      Contains("gather") && Contains("[2, 1]") && Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(ops::gather(x, 2, ints({0, 1, 2}, {3, 1}, DType::i64, device)),
                      Contains("gather") && Contains("dim 2"));
  REQUIRE_THROWS_WITH(ops::gather(x, 1, rnd({3, 1}, DType::f32, device, 3)),
                      Contains("gather") && Contains("i32 or i64"));
  if (device.is_cuda())
    REQUIRE_THROWS_WITH(ops::gather(x, 1, ints({0, 1, 2}, {3, 1}, DType::i64, Device::cpu())),
                        Contains("gather") && Contains("device"));

  Tensor gi = ints({1, 1, 0, 2, 3, 3}, {3, 2}, DType::i64, device);
  require_gradcheck([gi](const std::vector<Tensor>& v) { return fg::gather(v[0], 1, gi); },
                    {leaf({3, 4}, device, DType::f64, 4)});
}

// =======================================================================================
// cat / split / chunk

FG_TEST_ALL_DEVICES("cat along any dim, including non-contiguous inputs", "[nn][cat]") {
  for (DType dt : kDTypes) {
    Tensor a = rnd({2, 3, 4}, dt, device, 1);
    Tensor b = rnd({2, 5, 4}, dt, device, 2);
    Tensor c = ops::transpose(rnd({2, 4, 1}, dt, device, 3), 1, 2);  // [2, 1, 4] view
    poison(device);
    Tensor y = ops::cat({a, b, c}, 1);
    REQUIRE(y.shape() == Shape{2, 9, 4});
    auto av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = c.to_vector<double>();
    std::vector<double> ref;
    for (int64_t i = 0; i < 2; ++i) {
      ref.insert(ref.end(), av.begin() + i * 12, av.begin() + (i + 1) * 12);
      ref.insert(ref.end(), bv.begin() + i * 20, bv.begin() + (i + 1) * 20);
      ref.insert(ref.end(), cv.begin() + i * 4, cv.begin() + (i + 1) * 4);
    }
    REQUIRE(rel_err(y, host(ref, {2, 9, 4})) == 0.0);
    Tensor y0 = ops::cat({a, a}, 0);
    REQUIRE(y0.shape() == Shape{4, 3, 4});
    auto y0v = y0.to_vector<double>();
    REQUIRE(std::vector<double>(y0v.begin() + 24, y0v.end()) == av);
    Tensor yl = ops::cat({a, rnd({2, 3, 1}, dt, device, 4)}, -1);
    REQUIRE(yl.shape() == Shape{2, 3, 5});
  }
  Tensor a = rnd({2, 3}, DType::f32, device, 1);
  REQUIRE_THROWS_WITH(ops::cat({a, rnd({3, 3}, DType::f32, device, 2)}, 1),
                      Contains("cat") && Contains("[3, 3]") && Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(ops::cat({a, rnd({2, 3}, DType::f64, device, 3)}, 0),
                      Contains("cat") && Contains("f64"));
  REQUIRE_THROWS_WITH(ops::cat({}, 0), Contains("cat"));
  if (device.is_cuda())
    REQUIRE_THROWS_WITH(ops::cat({a, rnd({2, 3}, DType::f32, Device::cpu(), 4)}, 0),
                        Contains("cat") && Contains("device"));
}

FG_TEST_ALL_DEVICES("split and chunk give views with the right pieces", "[nn][cat]") {
  Tensor x = rnd({3, 7}, DType::f32, device, 1);
  auto parts = ops::split(x, {2, 0, 5}, 1);
  REQUIRE(parts.size() == 3);
  REQUIRE(parts[0].shape() == Shape{3, 2});
  REQUIRE(parts[1].shape() == Shape{3, 0});
  REQUIRE(parts[2].shape() == Shape{3, 5});
  REQUIRE(parts[2].same_storage(x));
  REQUIRE(rel_err(parts[2], ops::slice(x, 1, 2, 7)) == 0.0);
  REQUIRE_THROWS_WITH(ops::split(x, {2, 2}, 1), Contains("split") && Contains("7"));
  auto ch = fg::chunk(x, 3, 1);  // 7 -> 3, 3, 1
  REQUIRE(ch.size() == 3);
  REQUIRE(ch[0].size(1) == 3);
  REQUIRE(ch[2].size(1) == 1);
  REQUIRE(fg::chunk(x, 4, 0).size() == 3);  // 3 rows in 4 chunks: pieces of 1
}

FG_TEST_ALL_DEVICES("cat, split and chunk gradcheck", "[nn][cat][grad]") {
  require_gradcheck([](const std::vector<Tensor>& v) { return fg::cat({v[0], v[1], v[0]}, 1); },
                    {leaf({2, 3}, device, DType::f64, 1), leaf({2, 2}, device, DType::f64, 2)});
  // Pieces used in a different order, one of them unused (its gradient is zero).
  require_gradcheck([](const std::vector<Tensor>& v) {
    auto p = fg::split(v[0], {1, 2, 2}, 0);
    return fg::cat({p[2] * 2.0, p[0]}, 0);
  }, {leaf({5, 3}, device, DType::f64, 3)});
  require_gradcheck([](const std::vector<Tensor>& v) {
    auto p = fg::chunk(v[0], 2, -1);
    return p[0] * p[1];
  }, {leaf({3, 4}, device, DType::f64, 4)});
}
