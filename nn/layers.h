// The basic layers: Linear, Embedding, LayerNorm, Dropout, GELU.
//
// Each has an options struct with chainable setters (LinearOptions(128, 512).bias(false)) and
// a forward(). Parameters are created in fp32 on the CPU with PyTorch's default
// initialisation; GPT re-initialises them GPT-2 style, and Module::to() moves them.
#pragma once
#include <cstdint>

#include "nn/module.h"

namespace fg::nn {

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  LinearOptions& bias(bool b) { bias_ = b; return *this; }
  int64_t in_features_, out_features_;
  bool bias_ = true;
};

// y = x W^T + b over the last dim: x [..., in] -> y [..., out]; W [out, in], b [out].
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  std::string name() const override { return "Linear"; }
  LinearOptions options;
  Tensor weight, bias;  // bias undefined when options.bias_ is false
};

struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  int64_t num_embeddings_, embedding_dim_;
};

// Looks up rows of weight [num, dim]: indices (i32/i64) [...] -> [..., dim].
class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options, Generator* gen = nullptr);
  Tensor forward(const Tensor& indices) const;
  std::string name() const override { return "Embedding"; }
  EmbeddingOptions options;
  Tensor weight;
};

struct LayerNormOptions {
  explicit LayerNormOptions(int64_t normalized_size) : normalized_size_(normalized_size) {}
  LayerNormOptions& eps(double e) { eps_ = e; return *this; }
  LayerNormOptions& elementwise_affine(bool a) { affine_ = a; return *this; }
  LayerNormOptions& bias(bool b) { bias_ = b; return *this; }
  int64_t normalized_size_;
  double eps_ = 1e-5;
  bool affine_ = true;
  bool bias_ = true;
};

// Normalises the last dim, then scales by weight and shifts by bias (both [size]).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  Tensor forward(const Tensor& x) const;
  std::string name() const override { return "LayerNorm"; }
  LayerNormOptions options;
  Tensor weight, bias;
};

struct DropoutOptions {
  explicit DropoutOptions(double p = 0.5) : p_(p) {}
  DropoutOptions& p(double v) { p_ = v; return *this; }
  double p_;
};

// Inverted dropout in training mode (the Philox mask of fg::dropout, drawing its seed and
// offset from the default generator); the identity in eval mode or when p == 0.
class Dropout : public Module {
 public:
  explicit Dropout(const DropoutOptions& options = DropoutOptions());
  Tensor forward(const Tensor& x) const;
  // residual + forward(x) as one node and one pass (a residual connection after the dropout).
  Tensor forward_add(const Tensor& x, const Tensor& residual) const;
  std::string name() const override { return "Dropout"; }
  DropoutOptions options;
};

// GELU, tanh approximation (GPT-2).
class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) const;
  std::string name() const override { return "GELU"; }
};

}  // namespace fg::nn
