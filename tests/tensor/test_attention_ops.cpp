// The raw attention ops (tensor/ops_attention.cpp): the flash forward and backward against the
// fp64 reference of kernels/attention/cpu/reference.h (GQA, Nq != Nk, bottom-right causal with
// fully masked rows, dropout, strided inputs), the naive path's bias and dropout scale against
// the element rules, and the ops' argument errors, on every device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/philox.h"
#include "kernels/attention/attention.h"
#include "support/test_util.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::host;
using test::rel_err;

namespace {

struct Case {
  int64_t B, Nq, Nk, Hq, Hkv, D;
  bool causal;
  double p;
};

struct Values {
  std::vector<double> o, lse, dq, dk, dv;
};

bool allowed(const Case& c, int64_t i, int64_t j) { return !c.causal || j <= i + c.Nk - c.Nq; }

bool kept(const Case& c, const ops::AttentionConfig& cfg, int64_t b, int64_t h, int64_t i,
          int64_t j) {
  return attention_dropout_keep(cfg.seed, cfg.offset, uint32_t(b), uint32_t(h), uint32_t(c.Hq),
                                uint32_t(i), uint32_t(j),
                                attention_dropout_threshold(cfg.dropout_p));
}

// The fp64 reference of the library (kernels/attention/cpu/reference.h) on the host values of
// contiguous q, dout [B, Nq, Hq, D] and k, v [B, Nk, Hkv, D].
Values reference(const Case& c, const ops::AttentionConfig& cfg, double scale,
                 const std::vector<double>& q, const std::vector<double>& k,
                 const std::vector<double>& v, const std::vector<double>& dout) {
  AttentionParams p;
  p.B = c.B, p.Nq = c.Nq, p.Nk = c.Nk, p.Hq = c.Hq, p.Hkv = c.Hkv, p.D = c.D;
  set_contiguous_strides(p);
  p.softmax_scale = scale;
  p.causal = cfg.causal;
  p.dropout_p = cfg.dropout_p;
  p.seed = cfg.seed, p.offset = cfg.offset;
  Values r;
  r.o.resize(q.size()), r.dq.resize(q.size()), r.dk.resize(k.size()), r.dv.resize(v.size());
  r.lse.resize(size_t(c.B * c.Hq * c.Nq));
  attention_reference_forward(p, q.data(), k.data(), v.data(), r.o.data(), r.lse.data());
  attention_reference_backward(p, q.data(), k.data(), v.data(), dout.data(), r.dq.data(),
                               r.dk.data(), r.dv.data());
  return r;
}

const Case kCases[] = {
    {2, 37, 53, 4, 2, 32, true, 0.2},    // GQA, Nq < Nk, causal, dropout
    {1, 70, 45, 2, 1, 32, true, 0.0},    // MQA, Nq > Nk: the first 25 rows see no key
    {1, 65, 65, 2, 2, 32, false, 0.1}};  // MHA, one row past a tile

}  // namespace

FG_TEST_ALL_DEVICES("flash attention ops match the reference in double", "[attention]") {
  uint64_t seed = 10;
  for (const Case& c : kCases) {
    INFO("B " << c.B << " Nq " << c.Nq << " Nk " << c.Nk << " Hq " << c.Hq << " Hkv " << c.Hkv
              << " causal " << c.causal << " p " << c.p);
    // q is a strided slice of a fused projection; k and v are contiguous.
    Tensor qkv = test::rnd({c.B, c.Nq, 2, c.Hq, c.D}, DType::f64, device, ++seed);
    Tensor q = ops::select(qkv, 2, 1);
    Tensor k = test::rnd({c.B, c.Nk, c.Hkv, c.D}, DType::f64, device, ++seed);
    Tensor v = test::rnd({c.B, c.Nk, c.Hkv, c.D}, DType::f64, device, ++seed);
    Tensor dout = test::rnd({c.B, c.Nq, c.Hq, c.D}, DType::f64, device, ++seed);
    ops::AttentionConfig cfg;
    cfg.causal = c.causal;
    cfg.dropout_p = c.p;
    cfg.seed = 1234;
    cfg.offset = 7;
    const double scale = 1.0 / std::sqrt(double(c.D));
    // f64 rounding only: 3x the largest error measured on the CPU (relative L2 4.9e-16 for O
    // and the gradients, 8.9e-16 absolute for the LSE). The CUDA f64 kernels sum in another
    // order and fuse multiply-adds: their worst was 6.9e-16 for the gradients (H200,
    // 2026-11-28), so 1.4x the CPU bounds, 3x that.
    const double device_factor = device.is_cuda() ? 1.4 : 1;
    auto check = [&](const char* what, double err, double cpu_bound) {
      const double bound = device_factor * cpu_bound;
      std::printf("measured ops-flash-%s f64 %s %.3e bound %.1e | B=%lld Nq=%lld Nk=%lld\n",
                  device.is_cuda() ? "cuda" : "cpu", what, err, bound, (long long)c.B,
                  (long long)c.Nq, (long long)c.Nk);
      INFO(what << " " << err << " bound " << bound);
      CHECK(err < bound);
    };
    Values ref = reference(c, cfg, scale, q.to_vector<double>(), k.to_vector<double>(),
                           v.to_vector<double>(), dout.to_vector<double>());

    test::poison(device);
    ops::FlashAttentionResult f = ops::flash_attention_forward(q, k, v, cfg);
    REQUIRE(f.o.shape() == Shape{c.B, c.Nq, c.Hq, c.D});
    REQUIRE(f.lse.shape() == Shape{c.B, c.Hq, c.Nq});
    REQUIRE(f.lse.dtype() == DType::f64);
    check("o rel_l2", rel_err(f.o, host(ref.o, f.o.shape())), 1.5e-15);
    std::vector<double> lse = f.lse.to_vector<double>();
    double lse_err = 0;
    for (size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(ref.lse[i])) CHECK(lse[i] == ref.lse[i]);
      else lse_err = std::max(lse_err, std::fabs(lse[i] - ref.lse[i]));
    }
    check("lse max_abs", lse_err, 3e-15);

    test::poison(device);
    ops::FlashAttentionGrads g = ops::flash_attention_backward(q, k, v, f.o, f.lse, dout, cfg);
    check("dq rel_l2", rel_err(g.dq, host(ref.dq, q.shape())), 1.5e-15);
    check("dk rel_l2", rel_err(g.dk, host(ref.dk, k.shape())), 1.5e-15);
    check("dv rel_l2", rel_err(g.dv, host(ref.dv, v.shape())), 1.5e-15);
  }
}

FG_TEST_ALL_DEVICES("the naive path's bias and dropout scale follow the element rules",
                    "[attention]") {
  const Case c{2, 70, 45, 2, 1, 32, true, 0.3};
  Tensor q = test::rnd({c.B, c.Nq, c.Hq, c.D}, DType::f32, device, 1);
  Tensor k = test::rnd({c.B, c.Nk, c.Hkv, c.D}, DType::f32, device, 2);
  ops::AttentionConfig cfg;
  cfg.causal = true;
  cfg.dropout_p = c.p;
  cfg.seed = 99;
  cfg.offset = 4;

  test::poison(device);
  ops::AttentionBias bias = ops::attention_bias(q, k, cfg);
  REQUIRE(bias.bias.shape() == Shape{1, c.Nq, c.Nk});
  REQUIRE(bias.row_valid.shape() == Shape{1, c.Nq, 1});
  REQUIRE(bias.bias.dtype() == DType::f32);
  std::vector<double> bv = bias.bias.to_vector<double>(), rv = bias.row_valid.to_vector<double>();
  for (int64_t i = 0; i < c.Nq; ++i) {
    const bool any = allowed(c, i, 0);  // key 0 is the first a causal row sees
    CHECK(rv[size_t(i)] == (any ? 1.0 : 0.0));
    for (int64_t j = 0; j < c.Nk; ++j)
      CHECK(bv[size_t(i * c.Nk + j)] == (!any || allowed(c, i, j) ? 0.0 : -INFINITY));
  }

  test::poison(device);
  Tensor scale = ops::attention_dropout_scale(q, k, cfg);
  REQUIRE(scale.shape() == Shape{c.B, c.Hq, c.Nq, c.Nk});
  std::vector<float> sv = scale.to_vector<float>();
  const float keep = float(attention_dropout_keep_scale(c.p));
  int64_t n_kept = 0;
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.Nq; ++i)
        for (int64_t j = 0; j < c.Nk; ++j) {
          const bool z = kept(c, cfg, b, h, i, j);
          n_kept += z;
          CHECK(sv[size_t(((b * c.Hq + h) * c.Nq + i) * c.Nk + j)] == (z ? keep : 0.0f));
        }
  const double frac = double(n_kept) / double(sv.size());
  CHECK(std::fabs(frac - (1.0 - c.p)) < 0.02);
}

FG_TEST_ALL_DEVICES("attention ops refuse bad input, naming the op", "[attention]") {
  TensorOptions o = TensorOptions(DType::f32).device(device);
  Tensor q = zeros({1, 8, 4, 32}, o), k = zeros({1, 8, 4, 32}, o), v = zeros({1, 8, 4, 32}, o);
  ops::AttentionConfig cfg;
  REQUIRE_THROWS_WITH(ops::flash_attention_forward(q, zeros({1, 8, 3, 32}, o),
                                                   zeros({1, 8, 3, 32}, o), cfg),
                      Contains("flash_attention_forward") && Contains("multiple of the key/value"));
  REQUIRE_THROWS_WITH(ops::check_attention("my_attention", q, k, zeros({1, 9, 4, 32}, o), cfg, false),
                      Contains("my_attention") && Contains("same shape"));
  ops::FlashAttentionResult f = ops::flash_attention_forward(q, k, v, cfg);
  REQUIRE_THROWS_WITH(ops::flash_attention_backward(q, k, v, f.o, ops::to_dtype(f.lse, DType::f64),
                                                    f.o, cfg),
                      Contains("flash_attention_backward") && Contains("lse"));
  REQUIRE_THROWS_WITH(ops::flash_attention_backward(q, k, v, f.o, f.lse, zeros({1, 8, 4, 16}, o), cfg),
                      Contains("dout"));
  REQUIRE_THROWS_WITH(ops::attention_block_mask({1, 1, 1}, 1, 2, 2, device),
                      Contains("attention_block_mask") && Contains("3 mask bytes"));
  ops::AttentionConfig masked;
  masked.block_mask = ops::attention_block_mask({1, 1, 1, 1}, 1, 2, 2, device);  // for N 65..128
  REQUIRE_THROWS_WITH(ops::attention_bias(q, k, masked), Contains("attention_bias") &&
                                                           Contains("block mask of 1 x 2 x 2"));
  ops::AttentionConfig dropout;
  dropout.dropout_p = 1.0;
  REQUIRE_THROWS_WITH(ops::attention_dropout_scale(q, k, dropout), Contains("outside [0, 1)"));
  if (device.is_cuda()) {
    ops::AttentionConfig host_mask;
    host_mask.block_mask = ops::attention_block_mask({1}, 1, 1, 1, Device::cpu());
    REQUIRE_THROWS_WITH(ops::flash_attention_forward(q, k, v, host_mask),
                        Contains("block mask is on cpu"));
  }
}

// A KV cache whose rows hold different lengths: kv_cache_write appends at each row's own
// position, and kv_cache_attention attends each row to its own keys only, which is the flash
// forward over that row's keys alone (a row of no keys gives zeros). On CUDA in bf16 (the
// split-KV decode kernel's dtype in generation) and f32, on the CPU in f32.
FG_TEST_ALL_DEVICES("the KV-cache ops follow each row's own length", "[attention][kv_cache]") {
  for (DType dt : device.is_cuda() ? std::vector<DType>{DType::bf16, DType::f32}
                                   : std::vector<DType>{DType::f32}) {
  INFO("dtype " << dtype_name(dt));
  auto vals = [](const Tensor& t) { return t.to_vector<double>(); };
  const TensorOptions o = TensorOptions(dt).device(device);
  const TensorOptions i32 = TensorOptions(DType::i32).device(device);
  const int64_t B = 4, cap = 300, Hq = 6, Hkv = 2, D = 64;
  Generator g(11);
  Tensor kc = randn({B, cap, Hkv, D}, o, &g), vc = randn({B, cap, Hkv, D}, o, &g);
  const std::vector<int32_t> len = {0, 1, 77, 299};  // the lengths before the new token
  // New keys and values, as the strided views of a fused projection [B, 1, Hq + 2 Hkv, D].
  Tensor qkv = randn({B, 1, Hq + 2 * Hkv, D}, o, &g);
  Tensor q = qkv.narrow(2, 0, Hq), k = qkv.narrow(2, Hq, Hkv), v = qkv.narrow(2, Hq + Hkv, Hkv);
  const Tensor kc0 = kc.clone();
  const Tensor vc0 = vc.clone();
  ops::kv_cache_write(kc, vc, k, v, from_vector<int32_t>(len, {B}, i32));
  // Row b's new key and value sit at position len[b]; every other position is unchanged.
  for (int64_t b = 0; b < B; ++b) {
    INFO("row " << b);
    CHECK(vals(kc.select(0, b).select(0, len[size_t(b)])) == vals(k.select(0, b).select(0, 0)));
    CHECK(vals(vc.select(0, b).select(0, len[size_t(b)])) == vals(v.select(0, b).select(0, 0)));
    const int64_t p = len[size_t(b)];
    for (auto [now, was] : {std::pair<const Tensor*, const Tensor*>{&kc, &kc0}, {&vc, &vc0}}) {
      if (p > 0) CHECK(vals(now->select(0, b).narrow(0, 0, p)) == vals(was->select(0, b).narrow(0, 0, p)));
      if (p + 1 < cap)
        CHECK(vals(now->select(0, b).narrow(0, p + 1, cap - p - 1)) ==
              vals(was->select(0, b).narrow(0, p + 1, cap - p - 1)));
    }
  }
  ops::AttentionConfig cfg;
  cfg.causal = true;
  std::vector<int32_t> used;
  for (int32_t l : len) used.push_back(l + 1);
  used[0] = 0;  // row 0 attends to nothing: zeros
  const Tensor out = ops::kv_cache_attention(q, kc, vc, from_vector<int32_t>(used, {B}, i32), cfg);
  REQUIRE(out.shape() == Shape{B, 1, Hq, D});
  CHECK(vals(out.select(0, 0)) == std::vector<double>(size_t(Hq * D), 0.0));
  for (int64_t b = 1; b < B; ++b) {
    INFO("row " << b);
    const int64_t n = used[size_t(b)];
    const Tensor alone = ops::flash_attention_forward(q.narrow(0, b, 1), kc.narrow(0, b, 1).narrow(1, 0, n),
                                                      vc.narrow(0, b, 1).narrow(1, 0, n), cfg).o;
    CHECK(rel_err(out.narrow(0, b, 1), alone) < (dt == DType::bf16 ? 1e-2 : 1e-5));
  }
  // Refusals: a position past the capacity (nothing written), lengths of the wrong dtype.
  const Tensor before = kc.clone();
  CHECK_THROWS_WITH(ops::kv_cache_write(kc, vc, k, v, from_vector<int32_t>({0, 1, 300, 2}, {B}, i32)),
                    Contains("kv_cache_write") && Contains("entry 2") && Contains("capacity 300"));
  CHECK(vals(kc.select(0, 2)) == vals(before.select(0, 2)));
  CHECK_THROWS_WITH(ops::kv_cache_attention(q, kc, vc, from_vector<int64_t>({1, 1, 1, 1}, {B},
                                                                            TensorOptions(DType::i64).device(device)), cfg),
                    Contains("seqused_k must be an i32"));
  CHECK_THROWS_WITH(ops::kv_cache_write(kc, vc, q, v, from_vector<int32_t>(len, {B}, i32)),
                    Contains("do not fit the cache"));
  }
}

// The same rule over a long cache with one query row per kv head: on Hopper the split-KV
// kernel's cluster form, split several ways, with entries whose keys end before most of the
// splits (blocks with no key) and an entry of no keys at all.
FG_TEST_ALL_DEVICES("the KV-cache attention follows each row's length in a long cache",
                    "[attention][kv_cache]") {
  const DType dt = device.is_cuda() ? DType::bf16 : DType::f32;
  const TensorOptions o = TensorOptions(dt).device(device);
  const int64_t B = 4, cap = 4096, H = 2, D = 64;
  Generator g(12);
  const Tensor kc = randn({B, cap, H, D}, o, &g), vc = randn({B, cap, H, D}, o, &g);
  const Tensor q = randn({B, 1, H, D}, o, &g);
  const std::vector<int32_t> used = {0, 5, 700, 4096};
  ops::AttentionConfig cfg;
  cfg.causal = true;
  const Tensor out = ops::kv_cache_attention(
      q, kc, vc, from_vector<int32_t>(used, {B}, TensorOptions(DType::i32).device(device)), cfg);
  REQUIRE(out.shape() == Shape{B, 1, H, D});
  CHECK(out.select(0, 0).to_vector<double>() == std::vector<double>(size_t(H * D), 0.0));
  for (int64_t b = 1; b < B; ++b) {
    INFO("row " << b << ", " << used[size_t(b)] << " keys");
    const int64_t n = used[size_t(b)];
    const Tensor alone =
        ops::flash_attention_forward(q.narrow(0, b, 1), kc.narrow(0, b, 1).narrow(1, 0, n),
                                     vc.narrow(0, b, 1).narrow(1, 0, n), cfg).o;
    CHECK(rel_err(out.narrow(0, b, 1), alone) < (dt == DType::bf16 ? 1e-2 : 1e-5));
  }
}
