// Tests of nn/: the module registry, the layers against plain-loop references, GPT's shapes,
// initialisation, weight tying, causality, and flash == naive attention inside the model.
#include "support/test_util.h"

#include <cmath>
#include <set>

#include "nn/gpt.h"
#include "nn/layers.h"

using namespace fg;
using namespace fg::nn;
using fg::test::rel_err;

namespace {

GPTConfig small_config() {
  // Head dim 32: one the CUDA attention kernels are built for.
  return GPTConfig().vocab_size(11).block_size(8).n_layer(2).n_head(2).n_embd(64).seed(7);
}

Tensor random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed, Device d = Device::cpu()) {
  Generator g(seed);
  return randint(0, V, {B, T}, TensorOptions(DType::i64).device(d), &g);
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}

double std_of(const std::vector<double>& v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size()));
}

}  // namespace

FG_TEST_ALL_DEVICES("Linear computes x W^T + b over the last dim", "[nn]") {
  Generator g(3);
  Linear lin(LinearOptions(5, 3), &g);
  lin.to(device);
  Tensor x = test::leaf({2, 4, 5}, device, DType::f32, 11);
  Tensor y = lin.forward(x);
  REQUIRE(y.shape() == Shape{2, 4, 3});
  auto xv = x.to_vector<double>(), wv = lin.weight.to_vector<double>(), bv = lin.bias.to_vector<double>();
  std::vector<double> ref(2 * 4 * 3);
  for (int r = 0; r < 8; ++r)
    for (int o = 0; o < 3; ++o) {
      double s = bv[size_t(o)];
      for (int i = 0; i < 5; ++i) s += xv[size_t(r * 5 + i)] * wv[size_t(o * 5 + i)];
      ref[size_t(r * 3 + o)] = s;
    }
  REQUIRE(rel_err(y, from_vector<double>(ref, {2, 4, 3}, TensorOptions(DType::f64))) < 1e-5);
  // Without bias: one parameter only.
  Linear nb(LinearOptions(5, 3).bias(false), &g);
  REQUIRE(nb.named_parameters().size() == 1);
  REQUIRE_FALSE(nb.bias.defined());
  REQUIRE_THROWS_AS(lin.forward(test::leaf({2, 4}, device, DType::f32)), Error);
}

FG_TEST_ALL_DEVICES("Embedding and LayerNorm shapes and values", "[nn]") {
  Generator g(5);
  Embedding emb(EmbeddingOptions(7, 4), &g);
  emb.to(device);
  Tensor idx = from_vector<int64_t>({6, 0, 3}, {3}, TensorOptions(DType::i64)).to(device);
  Tensor e = emb.forward(idx);
  REQUIRE(e.shape() == Shape{3, 4});
  auto w = emb.weight.to_vector<float>();
  auto ev = e.to_vector<float>();
  for (int c = 0; c < 4; ++c) {
    REQUIRE(ev[size_t(c)] == w[size_t(6 * 4 + c)]);
    REQUIRE(ev[size_t(8 + c)] == w[size_t(3 * 4 + c)]);
  }

  LayerNorm ln(LayerNormOptions(6));
  ln.to(device);
  REQUIRE(ln.named_parameters().size() == 2);
  Tensor x = test::leaf({3, 6}, device, DType::f32, 9, -3, 5);
  auto y = ln.forward(x).to_vector<double>();
  for (int r = 0; r < 3; ++r) {
    std::vector<double> row(y.begin() + r * 6, y.begin() + r * 6 + 6);
    REQUIRE(std::fabs(mean_of(row)) < 1e-5);
    REQUIRE(std::fabs(std_of(row) - 1.0) < 1e-3);
  }
}

FG_TEST_ALL_DEVICES("Dropout is the identity in eval mode and drops in train mode", "[nn]") {
  Dropout d(DropoutOptions(0.5));
  Tensor x = ones({1000}, TensorOptions(DType::f32).device(device));
  d.eval();
  REQUIRE(rel_err(d.forward(x), x) == 0);
  d.train();
  auto y = d.forward(x).to_vector<float>();
  int zeros = 0;
  for (float v : y) {
    REQUIRE((v == 0.0f || v == 2.0f));
    zeros += v == 0.0f;
  }
  REQUIRE(zeros > 400);
  REQUIRE(zeros < 600);
  REQUIRE_THROWS_AS(Dropout(DropoutOptions(1.0)), Error);
}

TEST_CASE("Module registry: names, order, weight tying, train/eval, to(dtype)", "[nn]") {
  GPT model(small_config());
  NamedTensors params = model.named_parameters();
  std::vector<std::string> names;
  for (auto& p : params) names.push_back(p.first);
  REQUIRE(names.front() == "wte.weight");
  REQUIRE(names[1] == "wpe.weight");
  REQUIRE(names[2] == "blocks.0.ln_1.weight");
  REQUIRE(names[4] == "blocks.0.attn.c_attn.weight");
  REQUIRE(names.back() == "ln_f.bias");
  // 2 embeddings + per block (2 LN x 2 + 4 Linear x 2) + final LN 2.
  REQUIRE(params.size() == 2 + 2 * 12 + 2);
  REQUIRE(std::set<std::string>(names.begin(), names.end()).size() == names.size());
  // Parameter count by hand: V*C + T*C + L*(12 C^2 + 13 C) + 2C.
  const int64_t V = 11, T = 8, C = 64, L = 2;
  REQUIRE(model.num_parameters() == V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C);
  for (auto& p : params) REQUIRE(p.second.requires_grad());

  // train/eval reaches every submodule.
  model.eval();
  REQUIRE_FALSE(model.blocks->operator[](1)->mlp->drop->is_training());
  model.train();
  REQUIRE(model.blocks->operator[](1)->attn->resid_dropout->is_training());

  // to(dtype) changes the data in place: members, registry and copies all see it.
  Tensor held = model.wte->weight;
  model.to(DType::bf16);
  REQUIRE(held.dtype() == DType::bf16);
  REQUIRE(model.named_parameters()[0].second.dtype() == DType::bf16);
  REQUIRE(model.blocks->operator[](0)->mlp->c_fc->weight.dtype() == DType::bf16);
  REQUIRE(held.requires_grad());
  model.to(DType::f32);
  REQUIRE(held.dtype() == DType::f32);
}

TEST_CASE("load_state_dict copies values and names every mismatch", "[nn]") {
  GPT a(small_config()), b(GPTConfig(small_config()).seed(8));
  REQUIRE(rel_err(a.wte->weight, b.wte->weight) > 0.1);  // different seeds, different weights
  std::map<std::string, Tensor> sd;
  for (auto& p : a.state_dict()) sd[p.first] = p.second;
  b.load_state_dict(sd);
  for (size_t i = 0; i < a.state_dict().size(); ++i)
    REQUIRE(rel_err(a.state_dict()[i].second, b.state_dict()[i].second) == 0);

  auto missing = sd;
  missing.erase("ln_f.weight");
  REQUIRE_THROWS_WITH(b.load_state_dict(missing), Catch::Contains("missing: ln_f.weight"));
  auto extra = sd;
  extra["lm_head.weight"] = zeros({2, 2});
  REQUIRE_THROWS_WITH(b.load_state_dict(extra), Catch::Contains("unexpected: lm_head.weight"));
  b.load_state_dict(extra, /*strict=*/false);
  auto wrong = sd;
  wrong["wpe.weight"] = zeros({9, 64});
  REQUIRE_THROWS_WITH(b.load_state_dict(wrong), Catch::Contains("shape mismatch: wpe.weight"));
}

TEST_CASE("GPT-2 initialisation: N(0, 0.02), scaled residual projections, zero biases", "[nn]") {
  GPT m(GPTConfig().vocab_size(64).block_size(32).n_layer(4).n_head(4).n_embd(64).seed(1));
  auto fc = m.blocks->operator[](0)->mlp->c_fc->weight.to_vector<double>();
  auto proj = m.blocks->operator[](2)->mlp->c_proj->weight.to_vector<double>();
  auto wte = m.wte->weight.to_vector<double>();
  REQUIRE(std::fabs(std_of(fc) - 0.02) < 0.001);
  REQUIRE(std::fabs(std_of(wte) - 0.02) < 0.002);
  REQUIRE(std::fabs(std_of(proj) - 0.02 / std::sqrt(8.0)) < 0.0005);
  REQUIRE(std::fabs(mean_of(fc)) < 0.001);
  for (double v : m.blocks->operator[](1)->attn->c_attn->bias.to_vector<double>()) REQUIRE(v == 0);
  for (double v : m.ln_f->weight.to_vector<double>()) REQUIRE(v == 1);
  // Same seed, same weights.
  GPT m2(GPTConfig().vocab_size(64).block_size(32).n_layer(4).n_head(4).n_embd(64).seed(1));
  REQUIRE(rel_err(m.blocks->operator[](3)->attn->c_proj->weight,
                  m2.blocks->operator[](3)->attn->c_proj->weight) == 0);
}

FG_TEST_ALL_DEVICES("GPT forward: shapes, loss at init near ln(V), causality", "[nn]") {
  GPTConfig cfg = small_config();
  GPT m(cfg);
  m.to(device);
  m.eval();
  Tensor idx = random_tokens(3, 8, 11, 1, device);
  Tensor logits = m.forward(idx);
  REQUIRE(logits.shape() == Shape{3, 8, 11});
  REQUIRE(logits.dtype() == DType::f32);
  double loss = m.loss(idx, random_tokens(3, 8, 11, 2, device)).item();
  REQUIRE(std::fabs(loss - std::log(11.0)) < 0.2);

  // Changing the last token changes only the last position's logits.
  auto ids = idx.to_vector<int64_t>();
  ids[7] = (ids[7] + 1) % 11;
  Tensor idx2 = from_vector<int64_t>(ids, {3, 8}, TensorOptions(DType::i64)).to(device);
  auto a = logits.to_vector<double>(), b = m.forward(idx2).to_vector<double>();
  for (int t = 0; t < 8; ++t)
    for (int v = 0; v < 11; ++v) {
      double d = std::fabs(a[size_t(t * 11 + v)] - b[size_t(t * 11 + v)]);
      if (t < 7) REQUIRE(d <= (device.is_cpu() ? 0.0 : 1e-5));
    }
  double last_diff = 0;
  for (int v = 0; v < 11; ++v) last_diff += std::fabs(a[size_t(7 * 11 + v)] - b[size_t(7 * 11 + v)]);
  REQUIRE(last_diff > 0);

  // Shorter sequences work; longer than the context is an error.
  REQUIRE(m.forward(random_tokens(2, 3, 11, 3, device)).shape() == Shape{2, 3, 11});
  REQUIRE_THROWS_WITH(m.forward(random_tokens(1, 9, 11, 3, device)), Catch::Contains("block_size"));
}

FG_TEST_ALL_DEVICES("GPT backward reaches every parameter; the tied embedding gets output gradients", "[nn]") {
  GPT m(small_config());
  m.to(device);
  // Only token 0 appears in the input: rows of wte for other tokens get gradient only through
  // the tied output projection.
  Tensor idx = zeros({2, 8}, TensorOptions(DType::i64).device(device));
  m.loss(idx, random_tokens(2, 8, 11, 4, device)).backward();
  for (auto& [name, p] : m.named_parameters()) {
    Tensor g = p.grad();
    INFO(name);
    REQUIRE(g.defined());
    REQUIRE(g.shape() == p.shape());
    for (double v : g.to_vector<double>()) REQUIRE(std::isfinite(v));
  }
  auto gw = m.wte->weight.grad().to_vector<double>();
  double row5 = 0;
  for (int c = 0; c < 64; ++c) row5 += std::fabs(gw[size_t(5 * 64 + c)]);
  REQUIRE(row5 > 0);
}

FG_TEST_ALL_DEVICES("GPT with flash attention equals GPT with naive attention (MHA and GQA)", "[nn]") {
  for (int64_t kv : {0, 1}) {
    GPTConfig cfg = GPTConfig().vocab_size(13).block_size(12).n_layer(2).n_head(4).n_kv_head(kv)
                        .n_embd(device.is_cuda() ? 128 : 32).seed(3);
    GPT flash(GPTConfig(cfg).attn(AttentionImpl::flash));
    GPT naive(GPTConfig(cfg).attn(AttentionImpl::naive));
    flash.to(device);
    naive.to(device);
    const int64_t D = cfg.n_embd_ / 4;
    REQUIRE(flash.blocks->operator[](0)->attn->c_attn->weight.shape() ==
            Shape{cfg.n_embd_ + 2 * cfg.kv_heads() * D, cfg.n_embd_});
    Tensor idx = random_tokens(2, 12, 13, 5, device), tgt = random_tokens(2, 12, 13, 6, device);
    Tensor lf = flash.loss(idx, tgt), ln = naive.loss(idx, tgt);
    REQUIRE(std::fabs(lf.item() - ln.item()) < 1e-5);
    lf.backward();
    ln.backward();
    auto pf = flash.named_parameters(), pn = naive.named_parameters();
    for (size_t i = 0; i < pf.size(); ++i) {
      INFO(pf[i].first);
      REQUIRE(rel_err(pf[i].second.grad(), pn[i].second.grad()) < 1e-4);
    }
  }
}

TEST_CASE("GPT config validation names the bad field", "[nn]") {
  REQUIRE_THROWS_WITH(GPT(GPTConfig().n_embd(30).n_head(4)), Catch::Contains("multiple of n_head"));
  REQUIRE_THROWS_WITH(GPT(GPTConfig().n_head(4).n_kv_head(3)), Catch::Contains("n_kv_head"));
  REQUIRE_THROWS_WITH(GPT(GPTConfig().vocab_size(0)), Catch::Contains("vocab_size"));
}
