// Generation from a trained GPT: temperature, top-k and top-p (nucleus) sampling, several
// prompts as one batch, with a KV cache (nn/kv_cache.h) or, as the oracle, by recomputing the
// whole context for every token.
//
// The context window. Each sequence attends to a window of its most recent tokens: the prompt
// (its last block_size tokens, when longer), then each new token in turn. When a new token
// would not fit in block_size, the window restarts from its last block_size / 2 tokens (at
// least one), which are prefilled again. The window slides in half-context jumps rather than
// one token at a time because the position embeddings are absolute: a cached key was computed
// at its position in the window, and shifting the window would change every position. Both
// paths, cache and no cache, follow the same rule, so they give the same tokens.
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
  double top_p = 1.0;        // keep the most likely tokens whose probabilities sum to top_p
  uint64_t seed = 42;
  bool kv_cache = true;      // false: recompute the whole window for every token (the oracle)
  // With the KV cache on a CUDA device: capture the decode step as a CUDA graph on its second
  // use and replay it after (one launch per step instead of some 150); false runs every step
  // kernel by kernel. Same tokens either way.
  bool cuda_graph = true;
  // Asked before each token (when set): true ends the sample there, e.g. on Ctrl-C, so that
  // a long sample can be stopped promptly. generate() then returns the tokens drawn so far.
  std::function<bool()> stop;
};

// What a generation did, for the summary line: tokens run through the model as prompts
// (prefill, window restarts included) and one at a time (decode), and the time of each.
struct SampleStats {
  int64_t prefill_tokens = 0, decode_tokens = 0, window_restarts = 0;
  bool cuda_graph = false;  // whether the decode steps were replayed from a CUDA graph
  double prefill_seconds = 0, decode_seconds = 0;
};

// Extends each prompt (at least one token each; lengths may differ) by max_new_tokens tokens,
// as one batch. Runs the model in eval mode without a graph; for each new token, divides the
// logits by the temperature, keeps the top k, then the top p, and draws from the softmax with a
// Philox generator seeded by options.seed (row r's token n is element n at offset r).
// `on_token` (optional) sees each new token as it is drawn, with its row. Returns only the new
// tokens, per row (fewer than max_new_tokens when options.stop ended it). The model's
// train/eval mode is restored afterwards.
std::vector<std::vector<int32_t>> generate_batch(
    nn::GPT& model, const std::vector<std::vector<int32_t>>& prompts, const SampleOptions& options,
    const std::function<void(int64_t row, int32_t token)>& on_token = {},
    SampleStats* stats = nullptr);

// One prompt: generate_batch with a batch of one.
std::vector<int32_t> generate(nn::GPT& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& options,
                              const std::function<void(int32_t)>& on_token = {});

// Picks a token from logits (host, fp32) under temperature, top-k and top-p, with uniform u in
// [0, 1). Top-p keeps the smallest set of the most likely tokens (after top-k) whose
// probabilities reach top_p, and always the most likely one.
int32_t sample_from_logits(std::vector<float> logits, double temperature, int64_t top_k, double u,
                           double top_p = 1.0);

}  // namespace fg::train
