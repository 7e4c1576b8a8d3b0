// Linear, Embedding, LayerNorm, Dropout and GELU: thin modules over the differentiable ops.
#include "nn/layers.h"

#include <cmath>

#include "autograd/functions.h"

namespace fg::nn {

namespace {
// Uniform in [-bound, bound), as PyTorch initialises Linear layers.
Tensor uniform(const Shape& s, double bound, Generator* gen) {
  Tensor u = rand(s, TensorOptions(DType::f32), gen);
  return ops::add_scalar(ops::mul_scalar(u, 2 * bound), -bound);
}
}  // namespace

Linear::Linear(const LinearOptions& o, Generator* gen) : options(o) {
  FG_CHECK(o.in_features_ > 0 && o.out_features_ > 0, "Linear: sizes must be positive, got in=",
           o.in_features_, " out=", o.out_features_);
  double bound = 1.0 / std::sqrt(double(o.in_features_));
  weight = register_parameter("weight", uniform({o.out_features_, o.in_features_}, bound, gen));
  if (o.bias_) bias = register_parameter("bias", uniform({o.out_features_}, bound, gen));
}

Tensor Linear::forward(const Tensor& x) const {
  FG_CHECK(x.dim() >= 1 && x.size(-1) == options.in_features_, "Linear: input ",
           shape_str(x.shape()), " does not end in in_features=", options.in_features_);
  return linear(x, weight, bias);
}

Embedding::Embedding(const EmbeddingOptions& o, Generator* gen) : options(o) {
  FG_CHECK(o.num_embeddings_ > 0 && o.embedding_dim_ > 0,
           "Embedding: sizes must be positive, got num=", o.num_embeddings_,
           " dim=", o.embedding_dim_);
  weight = register_parameter(
      "weight", randn({o.num_embeddings_, o.embedding_dim_}, TensorOptions(DType::f32), gen));
}

Tensor Embedding::forward(const Tensor& indices) const { return embedding(weight, indices); }

LayerNorm::LayerNorm(const LayerNormOptions& o) : options(o) {
  FG_CHECK(o.normalized_size_ > 0, "LayerNorm: size must be positive, got ", o.normalized_size_);
  if (o.affine_) {
    weight = register_parameter("weight", ones({o.normalized_size_}));
    if (o.bias_) bias = register_parameter("bias", zeros({o.normalized_size_}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  FG_CHECK(x.dim() >= 1 && x.size(-1) == options.normalized_size_, "LayerNorm: input ",
           shape_str(x.shape()), " does not end in normalized_size=", options.normalized_size_);
  return layer_norm(x, weight, bias, options.eps_);
}

Dropout::Dropout(const DropoutOptions& o) : options(o) {
  FG_CHECK(o.p_ >= 0 && o.p_ < 1, "Dropout: p must be in [0, 1), got ", o.p_);
}

Tensor Dropout::forward(const Tensor& x) const {
  if (!is_training() || options.p_ == 0) return x;
  return dropout(x, options.p_, true);
}

Tensor Dropout::forward_add(const Tensor& x, const Tensor& residual) const {
  return dropout_add(x, residual, options.p_, is_training());
}

Tensor GELU::forward(const Tensor& x) const { return gelu(x); }

}  // namespace fg::nn
