// The key/value cache of a GPT for generation: per layer, the keys and values of every token a
// sequence has seen, so that a new token costs one query row against them instead of a forward
// pass over the whole context.
//
//   KVCache cache(model.config, /*batch=*/B, /*capacity=*/model.config.block_size_, options);
//   logits = model.forward_cached(prompt_b, cache, /*row=*/b);   // prefill, sequence by sequence
//   logits = model.forward_cached(next, cache);                  // decode: one token per row
//
// Sequences of one batch may have different lengths: row b holds length(b) tokens, at
// positions 0 .. length(b) - 1 of its buffers.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/gpt.h"

namespace fg::nn {

class KVCache {
 public:
  // Buffers [batch, capacity, kv_heads, head_dim] per layer, in options' dtype and device (the
  // model's), uninitialised; every row starts empty. capacity is at most block_size: the
  // position embeddings end there.
  KVCache(const GPTConfig& config, int64_t batch, int64_t capacity, TensorOptions options);

  int64_t batch() const { return int64_t(length_.size()); }
  int64_t capacity() const { return capacity_; }
  int64_t length(int64_t row) const { return length_.at(size_t(row)); }
  // Forgets row `row`'s tokens (its buffers are overwritten by the next prefill).
  void clear(int64_t row) { length_.at(size_t(row)) = 0; }
  // Counts n more tokens in row `row`, after GPT::decode_step wrote them (forward_cached
  // counts its own). Throws past the capacity.
  void advance(int64_t row, int64_t n);
  // Layer l's keys and values, [batch, capacity, kv_heads, head_dim].
  const Tensor& keys(int64_t layer) const { return k_.at(size_t(layer)); }
  const Tensor& values(int64_t layer) const { return v_.at(size_t(layer)); }
  // Bytes the buffers hold.
  size_t nbytes() const;

 private:
  friend class GPT;
  int64_t capacity_;
  std::vector<Tensor> k_, v_;
  std::vector<int64_t> length_;
};

}  // namespace fg::nn
