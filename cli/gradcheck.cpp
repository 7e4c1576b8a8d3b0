// `flashgrad gradcheck attention`: the flash attention node against the naive one, over a grid
// of features, and against fp64 finite differences on small sizes.
//
// Error measures (printed per row, for O, dQ, dK, dV):
//   max_abs  max |flash - ref| over all elements
//   max_rel  max_abs / max |ref|   (relative to the largest reference magnitude, so that
//            elements near zero do not blow it up)
// Reference: for f64 and f32 the naive path in the same dtype; for bf16/f16 the naive path in
// f64 on the same (rounded) inputs, and a row passes when flash's error is at most twice the
// naive 16-bit path's own error plus a small floor (flash-attn's test rule).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/functions.h"
#include "cli/commands.h"

namespace fg::cli {

namespace {

struct Row {
  DType dtype;
  int64_t D, Nq, Nk, Hq, Hkv;
  bool causal;
  double p;
  int mask;  // 0 none, 1 sliding window, 2 global + local
};

struct Outputs {
  Tensor o, dq, dk, dv;
};

Outputs run(const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& dout,
            AttentionOptions opt, DType dt) {
  Tensor q = q0.to(dt).detach().set_requires_grad(true);
  Tensor k = k0.to(dt).detach().set_requires_grad(true);
  Tensor v = v0.to(dt).detach().set_requires_grad(true);
  Tensor o = scaled_dot_product_attention(q, k, v, opt);
  o.backward(dout.to(dt));
  return {o, q.grad(), k.grad(), v.grad()};
}

struct Err {
  double abs = 0, rel = 0;
};
Err compare(const Tensor& a, const Tensor& ref) {
  auto x = a.to_vector<double>(), y = ref.to_vector<double>();
  Err e;
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = std::fabs(x[i] - y[i]);
    if (std::isnan(d)) d = INFINITY;
    e.abs = std::max(e.abs, d);
    m = std::max(m, std::fabs(y[i]));
  }
  e.rel = m > 0 ? e.abs / m : e.abs;
  return e;
}

const char* mask_name(int m) { return m == 0 ? "-" : m == 1 ? "window" : "glob+loc"; }

AttentionOptions options_for(const Row& r, AttentionImpl impl) {
  AttentionOptions o;
  o.impl(impl).causal(r.causal).dropout(r.p).seed(1234, 7);
  if (r.mask == 1) o.block_mask(BlockMask::sliding_window(r.Nq, r.Nk, 64, r.causal));
  if (r.mask == 2) o.block_mask(BlockMask::global_local(r.Nq, r.Nk, 16, 64));
  return o;
}

std::vector<Row> grid(bool quick) {
  std::vector<Row> rows;
  const DType dtypes[] = {DType::f64, DType::f32, DType::bf16, DType::f16};
  for (DType dt : dtypes) {
    for (int64_t D : {32, 64, 128}) {
      rows.push_back({dt, D, 64, 64, 2, 2, false, 0.0, 0});   // plain
      if (quick && D != 64) continue;
      rows.push_back({dt, D, 37, 53, 2, 2, true, 0.0, 0});    // odd lengths, causal Nq < Nk
      rows.push_back({dt, D, 77, 45, 4, 2, true, 0.17, 0});   // causal Nq > Nk, dropout, GQA
      rows.push_back({dt, D, 100, 100, 4, 1, false, 0.3, 0}); // MQA, dropout
    }
    rows.push_back({dt, 64, 200, 200, 2, 2, false, 0.0, 1});  // sliding window
    rows.push_back({dt, 64, 200, 200, 2, 2, true, 0.1, 1});   // causal window + dropout
    rows.push_back({dt, 64, 150, 230, 4, 2, false, 0.0, 2});  // global + local, GQA
  }
  return rows;
}

// Directional finite difference of L = sum(O * R) in fp64 against the analytic gradient.
double finite_difference_check(Device dev, int64_t D) {
  Generator g(99);
  TensorOptions o = TensorOptions(DType::f64).device(dev);
  Tensor q = randn({1, 9, 2, D}, o, &g), k = randn({1, 11, 1, D}, o, &g),
         v = randn({1, 11, 1, D}, o, &g), R = randn({1, 9, 2, D}, o, &g);
  AttentionOptions opt;
  opt.causal(true).dropout(0.2).seed(5, 1);
  auto loss = [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    return (scaled_dot_product_attention(a, b, c, opt) * R).sum();
  };
  Tensor ql = q.detach().set_requires_grad(true), kl = k.detach().set_requires_grad(true),
         vl = v.detach().set_requires_grad(true);
  loss(ql, kl, vl).backward();
  double worst = 0;
  const double eps = 1e-6;
  for (int which = 0; which < 3; ++which) {
    Tensor base = which == 0 ? q : which == 1 ? k : v;
    Tensor grad = which == 0 ? ql.grad() : which == 1 ? kl.grad() : vl.grad();
    Tensor dir = randn(base.shape(), o, &g);
    NoGradGuard ng;
    auto at = [&](double s) {
      Tensor x = base + dir * s;
      return (which == 0 ? loss(x, k, v) : which == 1 ? loss(q, x, v) : loss(q, k, x)).item();
    };
    double numeric = (at(eps) - at(-eps)) / (2 * eps);
    double analytic = (grad * dir).sum().item();
    worst = std::max(worst, std::fabs(numeric - analytic) / std::max(std::fabs(numeric), 1e-8));
  }
  return worst;
}

int gradcheck_attention(const std::string& device_name, bool quick) {
  Device dev = device_from_string(device_name);
  std::vector<Row> rows = grid(quick);
  std::printf("flashgrad gradcheck attention on %s: flash vs naive, %zu rows\n",
              dev.str().c_str(), rows.size());
  std::printf("tolerance on max_rel: f64 1e-9, f32 2e-4; bf16/f16: flash error <= 2 x naive "
              "16-bit error + 2e-3 (both against naive f64)\n");
  std::printf("%-5s %4s %5s %5s %6s %5s %5s %-8s | %-19s %-19s %-19s %-19s | %s\n", "dtype", "D",
              "Nq", "Nk", "Hq/kv", "caus", "drop", "mask", "O abs/rel", "dQ abs/rel",
              "dK abs/rel", "dV abs/rel", "result");
  int failures = 0;
  Generator gen(2024);
  for (const Row& r : rows) {
    TensorOptions o = TensorOptions(DType::f64).device(dev);
    Tensor q = randn({2, r.Nq, r.Hq, r.D}, o, &gen), k = randn({2, r.Nk, r.Hkv, r.D}, o, &gen),
           v = randn({2, r.Nk, r.Hkv, r.D}, o, &gen), dout = randn({2, r.Nq, r.Hq, r.D}, o, &gen);
    bool low = r.dtype == DType::bf16 || r.dtype == DType::f16;
    if (low) {  // round the inputs once so every path sees the same values
      q = q.to(r.dtype).to(DType::f64);
      k = k.to(r.dtype).to(DType::f64);
      v = v.to(r.dtype).to(DType::f64);
      dout = dout.to(r.dtype).to(DType::f64);
    }
    Outputs flash = run(q, k, v, dout, options_for(r, AttentionImpl::flash), r.dtype);
    Outputs ref = run(q, k, v, dout, options_for(r, AttentionImpl::naive), low ? DType::f64 : r.dtype);
    Err e[4] = {compare(flash.o, ref.o), compare(flash.dq, ref.dq), compare(flash.dk, ref.dk),
                compare(flash.dv, ref.dv)};
    bool ok = true;
    if (low) {
      Outputs naive_low = run(q, k, v, dout, options_for(r, AttentionImpl::naive), r.dtype);
      Err n[4] = {compare(naive_low.o, ref.o), compare(naive_low.dq, ref.dq),
                  compare(naive_low.dk, ref.dk), compare(naive_low.dv, ref.dv)};
      for (int i = 0; i < 4; ++i) ok = ok && e[i].rel <= 2 * n[i].rel + 2e-3;
    } else {
      double tol = r.dtype == DType::f64 ? 1e-9 : 2e-4;
      for (int i = 0; i < 4; ++i) ok = ok && e[i].rel <= tol;
    }
    failures += ok ? 0 : 1;
    char hq[16];
    std::snprintf(hq, sizeof hq, "%lld/%lld", (long long)r.Hq, (long long)r.Hkv);
    std::printf("%-5s %4lld %5lld %5lld %6s %5s %5.2f %-8s |", dtype_name(r.dtype),
                (long long)r.D, (long long)r.Nq, (long long)r.Nk, hq, r.causal ? "yes" : "no",
                r.p, mask_name(r.mask));
    for (const Err& x : e) std::printf(" %8.1e/%8.1e ", x.abs, x.rel);
    std::printf("| %s\n", ok ? "PASS" : "FAIL");
    std::fflush(stdout);
  }
  std::printf("\nfp64 finite differences (directional, causal + dropout 0.2 + MQA, Nq 9, Nk 11):\n");
  for (int64_t D : {32, 64}) {
    double err = finite_difference_check(dev, D);
    bool ok = err < 1e-6;
    failures += ok ? 0 : 1;
    std::printf("  D %lld: max relative error %.2e (tolerance 1e-6) %s\n", (long long)D, err,
                ok ? "PASS" : "FAIL");
  }
  std::printf("\n%zu checks, %d failed: %s\n", rows.size() + 2, failures,
              failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}

}  // namespace

void register_gradcheck(CLI::App& app) {
  auto* gc = app.add_subcommand("gradcheck", "check gradients of the fused kernels");
  gc->require_subcommand(1);
  auto* att = gc->add_subcommand("attention", "flash vs naive attention over a feature grid");
  static std::string device = "cpu";
  static bool quick = false;
  att->add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
  att->add_flag("--quick", quick, "a smaller grid (head dim 64 only for the variations)");
  att->callback([] {
    int rc = gradcheck_attention(device, quick);
    if (rc) throw Exit{rc};
  });
}

}  // namespace fg::cli
