// Sampling from a trained GPT: temperature and top-k, one token at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "nn/gpt.h"

namespace fg::train {

struct SampleOptions {
  int64_t max_new_tokens = 200;
  double temperature = 1.0;  // 0 = greedy (always the most likely token)
  int64_t top_k = 0;         // keep only the k most likely tokens; 0 = all
  uint64_t seed = 42;
  // Asked before each token (when set): true ends the sample there, e.g. on Ctrl-C, so that
  // a long sample can be stopped promptly. generate() then returns the tokens drawn so far.
  std::function<bool()> stop;
};

// Extends `prompt` (at least one token) by max_new_tokens tokens. Each step runs the model in
// eval mode without a graph on the last block_size tokens, divides the last position's logits
// by the temperature, keeps the top k, and draws from the softmax with a Philox generator
// seeded by options.seed. `on_token` (optional) sees each new token as it is drawn, so that a
// caller can print the text as it grows. Returns only the new tokens (fewer than
// max_new_tokens when options.stop ended it). The model's train/eval mode is restored afterwards.
std::vector<int32_t> generate(nn::GPT& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& options,
                              const std::function<void(int32_t)>& on_token = {});

// Picks a token from logits (host, fp32) under temperature and top-k, with uniform u in [0, 1).
int32_t sample_from_logits(std::vector<float> logits, double temperature, int64_t top_k, double u);

}  // namespace fg::train
