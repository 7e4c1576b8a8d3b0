// CausalSelfAttention, MLP, Block and GPT (see nn/gpt.h for the architecture).
#include "nn/gpt.h"

#include <cmath>
#include <functional>

#include "autograd/functions.h"
#include "nn/kv_cache.h"

namespace fg::nn {

void GPTConfig::validate() const {
  // Every size fits in 31 bits, so that products of two of them fit in 64 and the attention
  // kernels' 32-bit counters hold.
  constexpr int64_t kMax = (int64_t(1) << 31) - 1;
  for (auto [name, v] : {std::pair<const char*, int64_t>{"vocab_size", vocab_size_},
                         {"block_size", block_size_}, {"n_layer", n_layer_}, {"n_head", n_head_},
                         {"n_kv_head", n_kv_head_}, {"n_embd", n_embd_}})
    FG_CHECK(v <= kMax, "GPT config: ", name, " = ", v, " is larger than 2^31 - 1");
  FG_CHECK(vocab_size_ > 0, "GPT config: vocab_size must be positive, got ", vocab_size_);
  FG_CHECK(block_size_ > 0, "GPT config: block_size (context) must be positive, got ",
           block_size_);
  FG_CHECK(n_layer_ > 0, "GPT config: n_layer must be positive, got ", n_layer_);
  FG_CHECK(n_head_ > 0, "GPT config: n_head must be positive, got ", n_head_);
  FG_CHECK(n_embd_ > 0 && n_embd_ % n_head_ == 0, "GPT config: n_embd (", n_embd_,
           ") must be a positive multiple of n_head (", n_head_, ")");
  FG_CHECK(n_kv_head_ >= 0 && n_head_ % kv_heads() == 0, "GPT config: n_head (", n_head_,
           ") must be a multiple of n_kv_head (", n_kv_head_, "); use 0 for n_kv_head = n_head");
  FG_CHECK(dropout_ >= 0 && dropout_ < 1, "GPT config: dropout must be in [0, 1), got ",
           dropout_);
}

// ---------------------------------------------------------------------------------------------
// CausalSelfAttention

CausalSelfAttention::CausalSelfAttention(const CausalSelfAttentionOptions& o, Generator* gen)
    : options(o) {
  int64_t kv = o.n_kv_head_ > 0 ? o.n_kv_head_ : o.n_head_;
  FG_CHECK(o.n_head_ > 0 && o.n_embd_ % o.n_head_ == 0 && o.n_head_ % kv == 0,
           "CausalSelfAttention: n_embd (", o.n_embd_, ") must be a multiple of n_head (",
           o.n_head_, ") and n_head a multiple of n_kv_head (", kv, ")");
  int64_t D = o.n_embd_ / o.n_head_;
  c_attn = register_module(
      "c_attn", std::make_shared<Linear>(LinearOptions(o.n_embd_, o.n_embd_ + 2 * kv * D).bias(o.bias_), gen));
  c_proj = register_module(
      "c_proj", std::make_shared<Linear>(LinearOptions(o.n_embd_, o.n_embd_).bias(o.bias_), gen));
  resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(DropoutOptions(o.dropout_)));
}

CausalSelfAttention::QKV CausalSelfAttention::project(const Tensor& x) const {
  FG_CHECK(x.dim() == 3 && x.size(2) == options.n_embd_, "CausalSelfAttention: expected input [B, T, ",
           options.n_embd_, "], got ", shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1), C = options.n_embd_, H = options.n_head_;
  const int64_t Hkv = options.n_kv_head_ > 0 ? options.n_kv_head_ : H, D = C / H;
  Tensor qkv = c_attn->forward(x);  // [B, T, C + 2 Hkv D]
  // Strided views into qkv: the attention node reads them in place. One split node (not three
  // narrows) so that the backward writes the three gradients into one buffer, with no zero
  // fills and no additions.
  std::vector<Tensor> parts = split(qkv, {C, Hkv * D, Hkv * D}, 2);
  return {parts[0].view({B, T, H, D}), parts[1].view({B, T, Hkv, D}),
          parts[2].view({B, T, Hkv, D})};
}

Tensor CausalSelfAttention::branch(const Tensor& x) const {
  const auto [q, k, v] = project(x);
  const int64_t B = x.size(0), T = x.size(1), C = options.n_embd_;
  AttentionOptions ao;
  ao.impl(options.impl_).causal(true).dropout(is_training() ? options.dropout_ : 0.0);
  Tensor y = scaled_dot_product_attention(q, k, v, ao);  // [B, T, H, D]
  return c_proj->forward(y.reshape({B, T, C}));
}

Tensor CausalSelfAttention::forward(const Tensor& x) const {
  return resid_dropout->forward(branch(x));
}

Tensor CausalSelfAttention::forward(const Tensor& x, const Tensor& residual) const {
  return resid_dropout->forward_add(branch(x), residual);
}

Tensor CausalSelfAttention::forward_cached(const Tensor& x, const Tensor& k_cache,
                                           const Tensor& v_cache, const std::vector<int64_t>& lengths,
                                           int64_t row0) const {
  const QKV qkv = project(x);  // named members: the lambda below captures them (C++17)
  const Tensor &q = qkv.q, &k = qkv.k, &v = qkv.v;
  const int64_t n = x.size(0), T = x.size(1), C = options.n_embd_;
  AttentionOptions ao;
  ao.impl(options.impl_).causal(true);  // bottom-right: new token t sees cached keys 0 .. L + t
  // Cache rows first .. first + count - 1 (x's rows r0 ..), each holding L tokens: their new
  // keys and values join the cache, and their queries attend to all of it.
  auto attend = [&](int64_t first, int64_t count, int64_t L, int64_t r0) {
    Tensor kc = k_cache.narrow(0, first, count), vc = v_cache.narrow(0, first, count);
    kc.narrow(1, L, T).copy_(k.narrow(0, r0, count));
    vc.narrow(1, L, T).copy_(v.narrow(0, r0, count));
    return scaled_dot_product_attention(q.narrow(0, r0, count), kc.narrow(1, 0, L + T),
                                        vc.narrow(1, 0, L + T), ao);
  };
  const int64_t L0 = lengths[size_t(row0)];
  bool same = true;
  for (int64_t r = 1; r < n; ++r) same = same && lengths[size_t(row0 + r)] == L0;
  Tensor y;
  if (same) {  // one prompt, or prompts of one length: every row in one call
    y = attend(row0, n, L0, 0);
  } else {     // row by row: each attends to its own keys only
    y = empty(q.shape(), TensorOptions(x.dtype()).device(x.device()));
    for (int64_t r = 0; r < n; ++r)
      y.narrow(0, r, 1).copy_(attend(row0 + r, 1, lengths[size_t(row0 + r)], r));
  }
  return c_proj->forward(y.reshape({n, T, C}));  // (the residual dropout is off in inference)
}

Tensor CausalSelfAttention::forward_step(const Tensor& x, const Tensor& residual,
                                         const Tensor& k_cache, const Tensor& v_cache,
                                         const Tensor& positions, const Tensor& seqused) const {
  const QKV qkv = project(x);
  const int64_t n = x.size(0), T = x.size(1), C = options.n_embd_;
  ops::kv_cache_write(k_cache, v_cache, qkv.k, qkv.v, positions);
  ops::AttentionConfig cfg;
  cfg.causal = true;  // bottom-right at each row's own length: the new token sees all its keys
  const Tensor y = ops::kv_cache_attention(qkv.q, k_cache, v_cache, seqused, cfg);
  // x + c_proj(y): the residual added in the projection's epilogue.
  return ops::linear_residual(y.reshape({n, T, C}), c_proj->weight, c_proj->bias, residual);
}

// ---------------------------------------------------------------------------------------------
// MLP and Block

MLP::MLP(int64_t n_embd, double dropout, bool bias, Generator* gen) {
  c_fc = register_module("c_fc", std::make_shared<Linear>(LinearOptions(n_embd, 4 * n_embd).bias(bias), gen));
  c_proj = register_module("c_proj", std::make_shared<Linear>(LinearOptions(4 * n_embd, n_embd).bias(bias), gen));
  drop = register_module("drop", std::make_shared<Dropout>(DropoutOptions(dropout)));
}

// c_proj(gelu(c_fc(x))) as one node (fg::linear_gelu_linear): the GELU rides in the GEMMs'
// epilogues, forward and backward.
Tensor MLP::forward(const Tensor& x) const {
  return drop->forward(linear_gelu_linear(x, c_fc->weight, c_fc->bias, c_proj->weight, c_proj->bias));
}

Tensor MLP::forward(const Tensor& x, const Tensor& residual) const {
  return drop->forward_add(
      linear_gelu_linear(x, c_fc->weight, c_fc->bias, c_proj->weight, c_proj->bias), residual);
}

Block::Block(const GPTConfig& c, Generator* gen) {
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(LayerNormOptions(c.n_embd_).bias(c.bias_)));
  attn = register_module("attn", std::make_shared<CausalSelfAttention>(
                                     CausalSelfAttentionOptions(c.n_embd_, c.n_head_)
                                         .n_kv_head(c.n_kv_head_)
                                         .dropout(c.dropout_)
                                         .bias(c.bias_)
                                         .impl(c.attn_),
                                     gen));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(LayerNormOptions(c.n_embd_).bias(c.bias_)));
  mlp = register_module("mlp", std::make_shared<MLP>(c.n_embd_, c.dropout_, c.bias_, gen));
}

Tensor Block::forward(const Tensor& x) const {
  Tensor h = attn->forward(ln_1->forward(x), /*residual=*/x);  // x + attn(ln_1(x))
  return mlp->forward(ln_2->forward(h), /*residual=*/h);        // h + mlp(ln_2(h))
}

Tensor Block::forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                             const std::vector<int64_t>& lengths, int64_t row0) const {
  Tensor h = x + attn->forward_cached(ln_1->forward(x), k_cache, v_cache, lengths, row0);
  return mlp->forward(ln_2->forward(h), /*residual=*/h);
}

Tensor Block::forward_step(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                           const Tensor& positions, const Tensor& seqused) const {
  const Tensor h = attn->forward_step(ln_1->forward(x), /*residual=*/x, k_cache, v_cache,
                                      positions, seqused);
  // h + mlp(ln_2(h)), the residual added in c_proj's epilogue (inference: no dropout).
  const Tensor f = ops::linear(ln_2->forward(h), mlp->c_fc->weight, mlp->c_fc->bias,
                               /*gelu=*/true, /*keep_pre=*/false).y;
  return ops::linear_residual(f, mlp->c_proj->weight, mlp->c_proj->bias, h);
}

// ---------------------------------------------------------------------------------------------
// GPT

namespace {
void for_each_module(Module& m, const std::string& prefix,
                     const std::function<void(const std::string&, Module&)>& fn) {
  fn(prefix, m);
  for (auto& c : m.named_children())
    for_each_module(*c.second, prefix.empty() ? c.first : prefix + "." + c.first, fn);
}

void init_normal(const Tensor& w, double std, Generator& g) {
  Tensor dst = w;
  dst.copy_(ops::mul_scalar(randn(w.shape(), TensorOptions(DType::f32), &g), std));
}
}  // namespace

GPT::GPT(const GPTConfig& c) : config(c) {
  c.validate();
  Generator g(c.seed_);
  wte = register_module("wte", std::make_shared<Embedding>(EmbeddingOptions(c.vocab_size_, c.n_embd_), &g));
  wpe = register_module("wpe", std::make_shared<Embedding>(EmbeddingOptions(c.block_size_, c.n_embd_), &g));
  drop = register_module("drop", std::make_shared<Dropout>(DropoutOptions(c.dropout_)));
  blocks = register_module("blocks", std::make_shared<ModuleList<Block>>());
  for (int64_t i = 0; i < c.n_layer_; ++i) blocks->push_back(std::make_shared<Block>(c, &g));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(LayerNormOptions(c.n_embd_).bias(c.bias_)));

  // GPT-2 initialisation, in module order, from a fresh generator of the same seed.
  NoGradGuard ng;
  Generator init(c.seed_ ^ 0x9e3779b97f4a7c15ull);
  const double residual_std = 0.02 / std::sqrt(2.0 * double(c.n_layer_));
  for_each_module(*this, "", [&](const std::string& path, Module& m) {
    if (auto* lin = dynamic_cast<Linear*>(&m)) {
      bool residual = path.size() >= 6 && path.compare(path.size() - 6, 6, "c_proj") == 0;
      init_normal(lin->weight, residual ? residual_std : 0.02, init);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = dynamic_cast<Embedding*>(&m)) {
      init_normal(emb->weight, 0.02, init);
    }
  });
}

Tensor GPT::forward(const Tensor& idx) const {
  FG_CHECK(idx.dim() == 2, "GPT: expected token indices [B, T], got ", shape_str(idx.shape()));
  const int64_t B = idx.size(0), T = idx.size(1), C = config.n_embd_;
  FG_CHECK(T >= 1 && T <= config.block_size_, "GPT: sequence length ", T,
           " exceeds the context (block_size) ", config.block_size_, "; crop the input");
  // Position embeddings 0..T-1 are the first T rows of wpe: a view, added by broadcasting.
  Tensor x = wte->forward(idx) + wpe->weight.narrow(0, 0, T);
  x = drop->forward(x);
  for (auto& b : *blocks) x = b->forward(x);
  x = ln_f->forward(x);
  // The output projection is the token embedding, transposed (weight tying).
  Tensor logits = matmul(x.reshape({B * T, C}), wte->weight.transpose(0, 1));
  return logits.view({B, T, config.vocab_size_});
}

void GPT::check_cache(const char* who, const KVCache& cache) const {
  FG_CHECK(int64_t(cache.k_.size()) == config.n_layer_ && cache.capacity() <= config.block_size_,
           who, ": the cache was made for another model (", cache.k_.size(), " layers, capacity ",
           cache.capacity(), ")");
  FG_CHECK(cache.k_[0].dtype() == wte->weight.dtype() &&
               cache.k_[0].device() == wte->weight.device(),
           who, ": the cache (", dtype_name(cache.k_[0].dtype()), " on ",
           cache.k_[0].device().str(), ") and the model (", dtype_name(wte->weight.dtype()),
           " on ", wte->weight.device().str(), ") must share the dtype and device");
}

Tensor GPT::forward_cached(const Tensor& idx, KVCache& cache, int64_t row) const {
  FG_CHECK(!is_training(), "GPT::forward_cached: the model is in training mode; call eval() "
           "first (the cache is for inference, without dropout)");
  FG_CHECK(idx.dim() == 2 && idx.size(1) >= 1, "GPT::forward_cached: expected token indices "
           "[n, T] with T >= 1, got ", shape_str(idx.shape()));
  const int64_t n = idx.size(0), T = idx.size(1), C = config.n_embd_;
  FG_CHECK(row >= 0 && n >= 1 && row + n <= cache.batch(), "GPT::forward_cached: rows ", row,
           " .. ", row + n - 1, " are outside the cache's batch of ", cache.batch());
  check_cache("GPT::forward_cached", cache);
  FG_CHECK(idx.device() == wte->weight.device(), "GPT::forward_cached: the tokens (on ",
           idx.device().str(), ") and the model (on ", wte->weight.device().str(),
           ") must share the device");
  std::vector<int64_t> pos(size_t(n * T));
  for (int64_t r = 0; r < n; ++r) {
    const int64_t L = cache.length(row + r);
    FG_CHECK(L + T <= cache.capacity(), "GPT::forward_cached: row ", row + r, " holds ", L,
             " tokens; ", T, " more exceed the cache's capacity ", cache.capacity(),
             " (start a new window: clear the row and prefill its last tokens)");
    for (int64_t t = 0; t < T; ++t) pos[size_t(r * T + t)] = L + t;
  }
  NoGradGuard ng;
  const Tensor positions =
      from_vector<int64_t>(pos, {n, T}, TensorOptions(DType::i64).device(idx.device()));
  Tensor x = wte->forward(idx) + wpe->forward(positions);
  for (int64_t l = 0; l < config.n_layer_; ++l)
    x = (*blocks)[size_t(l)]->forward_cached(x, cache.k_[size_t(l)], cache.v_[size_t(l)],
                                             cache.length_, row);
  for (int64_t r = 0; r < n; ++r) cache.length_[size_t(row + r)] += T;
  x = ln_f->forward(x.narrow(1, T - 1, 1).reshape({n, C}));  // only the last positions
  return matmul(x, wte->weight.transpose(0, 1));                // [n, vocab_size]
}

Tensor GPT::decode_step(const Tensor& tokens, const Tensor& positions, const Tensor& seqused,
                        const KVCache& cache) const {
  FG_CHECK(!is_training(), "GPT::decode_step: the model is in training mode; call eval() first");
  const int64_t B = cache.batch(), C = config.n_embd_;
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"tokens", &tokens},
                         {"positions", &positions}, {"seqused", &seqused}})
    FG_CHECK(t->defined() && t->dtype() == DType::i32 && t->dim() == 1 && t->size(0) == B &&
                 t->device() == wte->weight.device(),
             "GPT::decode_step: ", name, " must be i32 [", B, "] (one per cache row) on ",
             wte->weight.device().str(), ", got ",
             t->defined() ? str(dtype_name(t->dtype()), " ", shape_str(t->shape()), " on ",
                                t->device().str())
                          : std::string("an undefined tensor"));
  check_cache("GPT::decode_step", cache);
  NoGradGuard ng;
  Tensor x = wte->forward(tokens.view({B, 1})) + wpe->forward(positions.view({B, 1}));
  for (int64_t l = 0; l < config.n_layer_; ++l)
    x = (*blocks)[size_t(l)]->forward_step(x, cache.k_[size_t(l)], cache.v_[size_t(l)],
                                           positions, seqused);
  x = ln_f->forward(x.reshape({B, C}));
  return matmul(x, wte->weight.transpose(0, 1));  // [B, vocab_size]
}

Tensor GPT::loss(const Tensor& idx, const Tensor& targets) const {
  FG_CHECK(targets.shape() == idx.shape(), "GPT::loss: targets ", shape_str(targets.shape()),
           " must have the shape of idx ", shape_str(idx.shape()));
  Tensor logits = forward(idx);
  const int64_t n = idx.numel();
  return cross_entropy(logits.view({n, config.vocab_size_}), targets.reshape({n}));
}

int64_t GPT::num_non_embedding_parameters() const {
  return num_parameters() - wpe->weight.numel();
}

std::vector<std::pair<std::string, Shape>> gpt_parameter_shapes(const GPTConfig& c) {
  c.validate();
  const int64_t C = c.n_embd_, qkv = C + 2 * c.kv_heads() * c.head_dim();
  std::vector<std::pair<std::string, Shape>> out;
  auto linear = [&](const std::string& name, int64_t in, int64_t outf) {
    out.emplace_back(name + ".weight", Shape{outf, in});
    if (c.bias_) out.emplace_back(name + ".bias", Shape{outf});
  };
  auto layer_norm = [&](const std::string& name) {
    out.emplace_back(name + ".weight", Shape{C});
    if (c.bias_) out.emplace_back(name + ".bias", Shape{C});
  };
  out.emplace_back("wte.weight", Shape{c.vocab_size_, C});
  out.emplace_back("wpe.weight", Shape{c.block_size_, C});
  for (int64_t l = 0; l < c.n_layer_; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    layer_norm(b + "ln_1");
    linear(b + "attn.c_attn", C, qkv);
    linear(b + "attn.c_proj", C, C);
    layer_norm(b + "ln_2");
    linear(b + "mlp.c_fc", C, 4 * C);
    linear(b + "mlp.c_proj", 4 * C, C);
  }
  layer_norm("ln_f");
  return out;
}

}  // namespace fg::nn
