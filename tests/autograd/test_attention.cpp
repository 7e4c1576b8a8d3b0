// The attention node: flash and naive agree (values and gradients) on every device, flash's
// fp64 gradients match finite differences within and across tiles, the flash node saves O(N)
// bytes for backward where naive saves O(N^2), and bad input is refused.
#include <cstdio>

#include "support/test_util.h"

#include "autograd/attention.h"
#include "autograd/attention_check.h"

using namespace fg;
using fg::test::rel_err;

namespace {

struct Grads {
  Tensor o, dq, dk, dv;
};

Grads run(const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& dout,
          const AttentionOptions& opt) {
  Tensor q = q0.detach().set_requires_grad(true), k = k0.detach().set_requires_grad(true),
         v = v0.detach().set_requires_grad(true);
  Tensor o = scaled_dot_product_attention(q, k, v, opt);
  o.backward(dout);
  return {o, q.grad(), k.grad(), v.grad()};
}

// a against b: the relative L2 error of O, dQ, dK and dV under `bound`, each printed as a
// "measured <what> <dtype> <tensor> rel_l2 <error> bound <bound>" line.
void require_close(const Grads& a, const Grads& b, double bound, const char* what) {
  const char* names[4] = {"o", "dq", "dk", "dv"};
  const Tensor* x[4] = {&a.o, &a.dq, &a.dk, &a.dv};
  const Tensor* y[4] = {&b.o, &b.dq, &b.dk, &b.dv};
  for (int i = 0; i < 4; ++i) {
    const double err = rel_err(*x[i], *y[i]);
    std::printf("measured %s %s %s rel_l2 %.3e bound %.1e\n", what, dtype_name(x[i]->dtype()),
                names[i], err, bound);
    INFO(what << " " << names[i] << " rel_l2 " << err << " bound " << bound);
    CHECK(err < bound);
  }
}

}  // namespace

FG_TEST_ALL_DEVICES("flash and naive attention agree, with every feature", "[attention]") {
  // f32 on both sides. 3x the worst measured: CPU 4.5e-7; CUDA 1.75e-6 (the 3xTF32 forward's
  // O, the f32 default then; H200, 2026-11-28).
  const double bound = device.is_cuda() ? 5.3e-6 : 1.4e-6;
  Generator g(11);
  TensorOptions o = TensorOptions(DType::f32).device(device);
  struct Case {
    int64_t Nq, Nk, Hq, Hkv, D;
    bool causal;
    double p;
    int mask;
  } cases[] = {{64, 64, 2, 2, 64, false, 0.0, 0},  {37, 53, 4, 2, 32, true, 0.0, 0},
               {77, 45, 4, 1, 64, true, 0.2, 0},   {130, 130, 2, 2, 128, false, 0.1, 1},
               {150, 200, 4, 2, 64, false, 0.0, 2}};
  for (const Case& c : cases) {
    INFO("Nq " << c.Nq << " Nk " << c.Nk << " Hq " << c.Hq << " Hkv " << c.Hkv << " D " << c.D
               << " causal " << c.causal << " p " << c.p << " mask " << c.mask);
    Tensor q = randn({2, c.Nq, c.Hq, c.D}, o, &g), k = randn({2, c.Nk, c.Hkv, c.D}, o, &g),
           v = randn({2, c.Nk, c.Hkv, c.D}, o, &g), dout = randn({2, c.Nq, c.Hq, c.D}, o, &g);
    AttentionOptions opt;
    opt.causal(c.causal).dropout(c.p).seed(42, 3);
    if (c.mask == 1) opt.block_mask(BlockMask::sliding_window(c.Nq, c.Nk, 64, c.causal));
    if (c.mask == 2) opt.block_mask(BlockMask::global_local(c.Nq, c.Nk, 16, 32));
    Grads flash = run(q, k, v, dout, AttentionOptions(opt).impl(AttentionImpl::flash));
    Grads naive = run(q, k, v, dout, AttentionOptions(opt).impl(AttentionImpl::naive));
    require_close(flash, naive, bound, device.is_cuda() ? "node-flash-vs-naive-cuda"
                                                         : "node-flash-vs-naive-cpu");
  }
}

FG_TEST_ALL_DEVICES("gradcheck: flash attention in fp64", "[attention][gradcheck]") {
  Tensor q = test::leaf({1, 5, 2, 32}, device, DType::f64, 1);
  Tensor k = test::leaf({1, 7, 1, 32}, device, DType::f64, 2);
  Tensor v = test::leaf({1, 7, 1, 32}, device, DType::f64, 3);
  AttentionOptions opt;
  opt.causal(true).dropout(0.25).seed(8, 1);
  test::require_gradcheck(
      [&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], opt); },
      {q, k, v});
}

// fp64 gradients against finite differences per 64-row tile on a causal, dropout, MQA problem
// whose lengths (150 queries, 170 keys) cross two full tiles and a partial one on each axis
// (autograd/attention_check.h; `flashgrad gradcheck attention` prints the same checks).
FG_TEST_ALL_DEVICES("gradcheck: flash attention across tiles, finite differences per tile",
                    "[attention][gradcheck]") {
  const FiniteDifferenceResult fd = attention_finite_difference_check(device, 32);
  REQUIRE(fd.checks.size() == 9);  // 3 query tiles for dQ, 3 key tiles for dK and dV
  for (const FiniteDifferenceCheck& c : fd.checks) {
    std::printf("measured node-finite-difference-%s f64 d%c[%lld:%lld] rel_error %.3e bound "
                "%.1e\n", device.is_cuda() ? "cuda" : "cpu", c.input, (long long)c.row0,
                (long long)c.row1, c.rel_error, fd.bound);
    INFO("d" << c.input << " rows " << c.row0 << ".." << c.row1 << ": numeric " << c.numeric
              << " analytic " << c.analytic << " relative error " << c.rel_error);
    CHECK(c.rel_error <= fd.bound);
  }
}

FG_TEST_ALL_DEVICES("attention reads q, k, v through strides of a fused projection", "[attention]") {
  Generator g(5);
  Tensor qkv = randn({2, 33, 3, 2, 32}, TensorOptions(DType::f32).device(device), &g);
  Tensor q = qkv.select(2, 0), k = qkv.select(2, 1), v = qkv.select(2, 2);
  REQUIRE_FALSE(q.is_contiguous());
  AttentionOptions opt;
  opt.causal();
  Tensor a = scaled_dot_product_attention(q, k, v, opt);
  Tensor b = scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous(), opt);
  CHECK(test::max_abs_diff(a, b) == 0.0);
}

TEST_CASE("flash saves O(N) bytes for backward, naive O(N^2)", "[attention][memory]") {
  auto saved = [](int64_t N, AttentionImpl impl) {
    TensorOptions o = TensorOptions(DType::f32).requires_grad(true);
    Tensor q = randn({1, N, 2, 32}, o), k = randn({1, N, 2, 32}, o), v = randn({1, N, 2, 32}, o);
    Tensor out = scaled_dot_product_attention(q, k, v, AttentionOptions().impl(impl).causal().dropout(0.1));
    return double(saved_bytes_for_backward(out));
  };
  // Flash keeps q, k, v, o (4 x N x 2 x 32 floats) and the fp32 LSE (2 x N): exactly linear.
  for (int64_t N : {128, 256, 512}) CHECK(saved(N, AttentionImpl::flash) == double(N * (4 * 64 + 2) * 4));
  double f1 = saved(256, AttentionImpl::flash), f2 = saved(512, AttentionImpl::flash);
  double n1 = saved(256, AttentionImpl::naive), n2 = saved(512, AttentionImpl::naive);
  CHECK(f2 / f1 == Approx(2.0));
  CHECK(n2 / n1 > 3.5);  // quadratic term dominates: N x N scores, probabilities, dropout mask
  CHECK(n1 > 2 * 256 * 256 * 4);  // at least one N x N fp32 matrix per head is kept
}

TEST_CASE("attention refuses bad input with clear messages", "[attention]") {
  Tensor q = randn({1, 8, 4, 32}), k = randn({1, 8, 4, 32}), v = randn({1, 8, 4, 32});
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, randn({1, 8, 3, 32}), randn({1, 8, 3, 32})),
                      Catch::Contains("multiple of the key/value heads"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, randn({1, 9, 4, 32})),
                      Catch::Contains("same shape"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, randn({1, 8, 4, 16}), randn({1, 8, 4, 16})),
                      Catch::Contains("head dim"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(randn({8, 4, 32}), k, v),
                      Catch::Contains("expected q [B, Nq, Hq, D]"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, AttentionOptions().dropout(1.0)),
                      Catch::Contains("outside [0, 1)"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, AttentionOptions().dropout(-0.1)),
                      Catch::Contains("outside [0, 1)"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q.to(DType::f64), k, v),
                      Catch::Contains("one dtype"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q.to(DType::i32), k.to(DType::i32), v.to(DType::i32)),
                      Catch::Contains("floating"));
  REQUIRE_THROWS_WITH(
      scaled_dot_product_attention(q, k, v, AttentionOptions().block_mask(BlockMask::sliding_window(200, 200, 64, false))),
      Catch::Contains("block mask"));
  REQUIRE_THROWS_WITH(attention_impl_from_string("fast"), Catch::Contains("flash or naive"));
}

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("CUDA attention matches CPU attention with the same dropout mask", "[attention][cuda]") {
  Generator g(21);
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor q = randn({2, 70, 4, 64}, dt, &g), k = randn({2, 90, 2, 64}, dt, &g),
           v = randn({2, 90, 2, 64}, dt, &g), dout = randn({2, 70, 4, 64}, dt, &g);
    AttentionOptions opt;
    opt.causal().dropout(0.3).seed(99, 4);
    Grads cpu = run(q, k, v, dout, opt);
    Grads gpu = run(q.cuda(), k.cuda(), v.cuda(), dout.cuda(), opt);
    // 3x the worst measured (H200, 2026-11-28): f32 8.1e-7 (3xTF32, the default then, against
    // fp32 CPU arithmetic), bf16 2.8e-3 (both sides round to bf16, in different orders).
    require_close(gpu, cpu, dt == DType::f32 ? 2.5e-6 : 8.4e-3, "node-cuda-vs-cpu");
  }
}

TEST_CASE("CUDA deterministic attention backward is bit-reproducible", "[attention][cuda]") {
  Generator g(3);
  TensorOptions o = TensorOptions(DType::f32).device(Device::cuda());
  Tensor q = randn({2, 300, 4, 64}, o, &g), k = randn({2, 300, 4, 64}, o, &g),
         v = randn({2, 300, 4, 64}, o, &g), dout = randn({2, 300, 4, 64}, o, &g);
  AttentionOptions opt;
  opt.dropout(0.1).seed(1, 1).deterministic();
  Grads a = run(q, k, v, dout, opt), b = run(q, k, v, dout, opt);
  CHECK(test::max_abs_diff(a.dq, b.dq) == 0.0);
  CHECK(test::max_abs_diff(a.dk, b.dk) == 0.0);
  CHECK(test::max_abs_diff(a.dv, b.dv) == 0.0);
}

TEST_CASE("CUDA flash attention memory grows linearly with N", "[attention][cuda][memory]") {
  Device d = Device::cuda();
  auto peak_extra = [&](int64_t N, AttentionImpl impl) {
    TensorOptions o = TensorOptions(DType::bf16).device(d);
    Tensor q = randn({1, N, 8, 64}, o), k = randn({1, N, 8, 64}, o), v = randn({1, N, 8, 64}, o),
           dout = randn({1, N, 8, 64}, o);
    synchronize(d);
    size_t base = memory_stats(d).allocated;
    reset_peak_memory(d);
    run(q, k, v, dout, AttentionOptions().impl(impl).causal());
    synchronize(d);
    return double(memory_stats(d).peak_allocated - base);
  };
  double f1 = peak_extra(2048, AttentionImpl::flash), f2 = peak_extra(4096, AttentionImpl::flash);
  double n1 = peak_extra(1024, AttentionImpl::naive), n2 = peak_extra(2048, AttentionImpl::naive);
  CHECK(f2 / f1 < 2.2);
  CHECK(n2 / n1 > 3.5);
}

TEST_CASE("CUDA attention refuses unsupported head dims and mixed devices", "[attention][cuda]") {
  TensorOptions o = TensorOptions(DType::f32).device(Device::cuda());
  Tensor q = randn({1, 8, 2, 48}, o), k = randn({1, 8, 2, 48}, o), v = randn({1, 8, 2, 48}, o);
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v), Catch::Contains("head dim 48"));
  REQUIRE_NOTHROW(scaled_dot_product_attention(q, k, v, AttentionOptions().impl(AttentionImpl::naive)));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k.cpu(), v), Catch::Contains("one device"));
}
#endif
