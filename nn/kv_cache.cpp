// KVCache: per-layer key/value buffers and per-row lengths (see nn/kv_cache.h).
#include "nn/kv_cache.h"

#include <algorithm>

namespace fg::nn {

KVCache::KVCache(const GPTConfig& config, int64_t batch, int64_t capacity, TensorOptions options)
    : capacity_(capacity), length_(size_t(std::max<int64_t>(batch, 0)), 0) {
  config.validate();
  FG_CHECK(batch >= 1, "KVCache: batch must be at least 1, got ", batch);
  FG_CHECK(capacity >= 1 && capacity <= config.block_size_, "KVCache: capacity ", capacity,
           " must be from 1 to the model's context (block_size) ", config.block_size_);
  const Shape shape{batch, capacity, config.kv_heads(), config.head_dim()};
  options.requires_grad(false);
  for (int64_t l = 0; l < config.n_layer_; ++l) {
    k_.push_back(empty(shape, options));
    v_.push_back(empty(shape, options));
  }
}

void KVCache::advance(int64_t row, int64_t n) {
  FG_CHECK(row >= 0 && row < batch(), "KVCache::advance: row ", row, " is outside the batch of ",
           batch());
  int64_t& len = length_[size_t(row)];
  FG_CHECK(n >= 0 && len + n <= capacity_, "KVCache::advance: row ", row, " holds ", len,
           " tokens; ", n, " more exceed the capacity ", capacity_);
  len += n;
}

size_t KVCache::nbytes() const {
  size_t n = 0;
  for (size_t l = 0; l < k_.size(); ++l) n += k_[l].nbytes() + v_[l].nbytes();
  return n;
}

}  // namespace fg::nn
