// A GPT-2-style decoder-only transformer: causal self-attention on the flash node, MLP,
// pre-LayerNorm blocks, tied token embedding / output projection.
//
//   idx [B, T] -> wte(idx) + wpe(0..T-1) -> dropout -> n_layer x Block -> ln_f -> x wte^T
//   Block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
//
// Initialisation follows GPT-2: every Linear and Embedding weight ~ N(0, 0.02), biases 0,
// LayerNorm 1/0, and the projections that write into the residual stream (attn.c_proj,
// mlp.c_proj) ~ N(0, 0.02 / sqrt(2 n_layer)) so the residual's variance does not grow with
// depth. All of it is drawn from one Generator seeded by GPTConfig::seed, in named_parameters()
// order, so a config and a seed determine the initial weights exactly.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/attention.h"
#include "nn/layers.h"

namespace fg::nn {

class KVCache;  // nn/kv_cache.h

// The architecture. Setters chain: GPTConfig().vocab_size(65).n_layer(2).n_embd(128).
struct GPTConfig {
  int64_t vocab_size_ = 256;
  int64_t block_size_ = 64;   // the longest context
  int64_t n_layer_ = 2;
  int64_t n_head_ = 4;
  int64_t n_kv_head_ = 0;     // key/value heads; 0 = n_head (MHA); fewer = GQA, 1 = MQA
  int64_t n_embd_ = 128;
  double dropout_ = 0.0;      // embeddings, attention probabilities, residual branches
  bool bias_ = true;          // biases in Linear and LayerNorm layers
  AttentionImpl attn_ = AttentionImpl::flash;
  uint64_t seed_ = 1337;      // initialisation

  GPTConfig& vocab_size(int64_t v) { vocab_size_ = v; return *this; }
  GPTConfig& block_size(int64_t v) { block_size_ = v; return *this; }
  GPTConfig& n_layer(int64_t v) { n_layer_ = v; return *this; }
  GPTConfig& n_head(int64_t v) { n_head_ = v; return *this; }
  GPTConfig& n_kv_head(int64_t v) { n_kv_head_ = v; return *this; }
  GPTConfig& n_embd(int64_t v) { n_embd_ = v; return *this; }
  GPTConfig& dropout(double v) { dropout_ = v; return *this; }
  GPTConfig& bias(bool v) { bias_ = v; return *this; }
  GPTConfig& attn(AttentionImpl v) { attn_ = v; return *this; }
  GPTConfig& seed(uint64_t v) { seed_ = v; return *this; }

  int64_t kv_heads() const { return n_kv_head_ > 0 ? n_kv_head_ : n_head_; }
  int64_t head_dim() const { return n_embd_ / n_head_; }
  // Throws naming the first inconsistent field and what to change.
  void validate() const;
};

struct CausalSelfAttentionOptions {
  CausalSelfAttentionOptions(int64_t n_embd, int64_t n_head) : n_embd_(n_embd), n_head_(n_head) {}
  CausalSelfAttentionOptions& n_kv_head(int64_t v) { n_kv_head_ = v; return *this; }
  CausalSelfAttentionOptions& dropout(double v) { dropout_ = v; return *this; }
  CausalSelfAttentionOptions& bias(bool v) { bias_ = v; return *this; }
  CausalSelfAttentionOptions& impl(AttentionImpl v) { impl_ = v; return *this; }
  int64_t n_embd_, n_head_;
  int64_t n_kv_head_ = 0;  // 0 = n_head
  double dropout_ = 0.0;
  bool bias_ = true;
  AttentionImpl impl_ = AttentionImpl::flash;
};

// Multi-head causal self-attention. One fused projection c_attn gives Q (n_head heads) and
// K, V (n_kv_head heads each); Q, K and V are strided views of its output, passed to the
// attention node without a copy. c_proj maps the heads back to n_embd.
class CausalSelfAttention : public Module {
 public:
  explicit CausalSelfAttention(const CausalSelfAttentionOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // [B, T, C] -> [B, T, C]
  // residual + forward(x), the residual dropout and the addition fused (Block's form).
  Tensor forward(const Tensor& x, const Tensor& residual) const;
  // Inference with a cache: x [n, T, C] holds T new tokens of cache rows row0 .. row0 + n - 1,
  // row b having lengths[b] tokens before them. Their keys and values are written into
  // k_cache, v_cache [batch, capacity, Hkv, D] after those, and each row's queries attend to
  // all its cached keys (causal, bottom-right). The caller advances the lengths.
  Tensor forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                        const std::vector<int64_t>& lengths, int64_t row0) const;
  // One decode step with its lengths on the device (GPT::decode_step): x [B, 1, C] holds the
  // newest token of every cache row; its key and value go to position positions[b] of row b,
  // whose queries then attend to its first seqused[b] = positions[b] + 1 keys. Returns
  // residual + the branch, the addition done in c_proj's epilogue.
  Tensor forward_step(const Tensor& x, const Tensor& residual, const Tensor& k_cache,
                      const Tensor& v_cache, const Tensor& positions, const Tensor& seqused) const;
  std::string name() const override { return "CausalSelfAttention"; }
  CausalSelfAttentionOptions options;
  std::shared_ptr<Linear> c_attn, c_proj;
  std::shared_ptr<Dropout> resid_dropout;

 private:
  // c_attn(x) as Q [B, T, H, D], K and V [B, T, Hkv, D]: strided views of one output.
  struct QKV {
    Tensor q, k, v;
  };
  QKV project(const Tensor& x) const;
  // Projection, attention and c_proj: forward() without the residual dropout.
  Tensor branch(const Tensor& x) const;
};

// c_fc (C -> 4C), GELU, c_proj (4C -> C) as one fused node, then dropout.
class MLP : public Module {
 public:
  MLP(int64_t n_embd, double dropout, bool bias, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  Tensor forward(const Tensor& x, const Tensor& residual) const;  // residual + forward(x), fused
  std::string name() const override { return "MLP"; }
  std::shared_ptr<Linear> c_fc, c_proj;
  std::shared_ptr<Dropout> drop;
};

class Block : public Module {
 public:
  explicit Block(const GPTConfig& config, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  Tensor forward_cached(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                        const std::vector<int64_t>& lengths, int64_t row0) const;
  Tensor forward_step(const Tensor& x, const Tensor& k_cache, const Tensor& v_cache,
                      const Tensor& positions, const Tensor& seqused) const;
  std::string name() const override { return "Block"; }
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
};

class GPT : public Module {
 public:
  explicit GPT(const GPTConfig& config);
  // idx (i32/i64) [B, T] with T <= block_size -> logits [B, T, vocab_size] in the
  // parameters' dtype.
  Tensor forward(const Tensor& idx) const;
  // Inference with a KV cache (nn/kv_cache.h), without a graph: idx [n, T] holds the next T
  // tokens of cache rows row .. row + n - 1 (a prefill: a prompt, T >= 1; a decode step: T =
  // 1). Their keys and values join the cache and each row's length grows by T; every row must
  // stay within the cache's capacity. Returns the logits of each row's last new token,
  // [n, vocab_size], which equal forward() over the row's whole cached sequence at its last
  // position (up to rounding).
  Tensor forward_cached(const Tensor& idx, KVCache& cache, int64_t row = 0) const;
  // A decode step for every row of the cache at once, with no host work that depends on the
  // data, so that a CUDA graph can capture it (train/sample.cpp does). On the model's device:
  // tokens i32 [B], each row's newest token (not yet in the cache); positions i32 [B], each
  // row's length before it (cache.length(b)); seqused i32 [B], positions + 1. Writes the
  // tokens' keys and values at those positions and returns the next-token logits [B, V], as
  // forward_cached(tokens as [B, 1]) would; rows may hold different lengths. The cache's host
  // lengths are left alone: the caller advances them (KVCache::advance). Positions past the
  // capacity are an error, found by the kernels (and not checked while a graph is captured).
  Tensor decode_step(const Tensor& tokens, const Tensor& positions, const Tensor& seqused,
                     const KVCache& cache) const;
  // The mean cross-entropy of forward(idx) against targets [B, T] (fp32 scalar).
  Tensor loss(const Tensor& idx, const Tensor& targets) const;
  std::string name() const override { return "GPT"; }
  // Parameters without the position embedding (GPT-2's way of counting).
  int64_t num_non_embedding_parameters() const;

  GPTConfig config;
  std::shared_ptr<Embedding> wte, wpe;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<ModuleList<Block>> blocks;
  std::shared_ptr<LayerNorm> ln_f;
  // The output projection is wte->weight itself (weight tying): no separate parameter.

 private:
  // Throws, naming `who`, unless the cache was made for this model (its layers, a capacity
  // within the context) in the model's dtype on its device.
  void check_cache(const char* who, const KVCache& cache) const;
};

// The names and shapes of GPT(config).named_parameters(), in that order, computed from the
// config alone (nothing allocated): what a checkpoint's weights must hold for this config.
std::vector<std::pair<std::string, Shape>> gpt_parameter_shapes(const GPTConfig& config);

}  // namespace fg::nn
