// Temperature / top-k / top-p sampling from a GPT, batched, with or without a KV cache.
#include "train/sample.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "autograd/functions.h"
#include "nn/kv_cache.h"

namespace fg::train {

int32_t sample_from_logits(std::vector<float> logits, double temperature, int64_t top_k, double u,
                           double top_p) {
  const int64_t V = int64_t(logits.size());
  FG_CHECK(V > 0, "sample: no logits");
  FG_CHECK(temperature >= 0, "sample: temperature must be >= 0, got ", temperature);
  FG_CHECK(top_k >= 0, "sample: top-k must be >= 0, got ", top_k);
  FG_CHECK(top_p > 0 && top_p <= 1, "sample: top-p must be in (0, 1], got ", top_p);
  if (temperature == 0)
    return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  // Keep the k largest: everything below the k-th largest value is dropped.
  float cutoff = -INFINITY;
  if (top_k > 0 && top_k < V) {
    std::vector<float> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(), std::greater<float>());
    cutoff = sorted[size_t(top_k - 1)];
  }
  double mx = -INFINITY;
  for (float l : logits) mx = std::max(mx, double(l));
  std::vector<double> p(size_t(V), 0.0);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (logits[size_t(i)] < cutoff) continue;
    p[size_t(i)] = std::exp((double(logits[size_t(i)]) - mx) / temperature);
    total += p[size_t(i)];
  }
  if (top_p < 1) {
    // The most likely tokens, in order, until their share of the total reaches top_p.
    std::vector<int64_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return p[size_t(a)] > p[size_t(b)]; });
    double kept = 0;
    size_t n = 0;
    while (n < order.size() && (n == 0 || kept < top_p * total)) kept += p[size_t(order[n++])];
    for (size_t i = n; i < order.size(); ++i) p[size_t(order[i])] = 0;
    total = kept;
  }
  double target = u * total, acc = 0;
  int32_t last = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (p[size_t(i)] == 0) continue;
    acc += p[size_t(i)];
    last = int32_t(i);
    if (target < acc) return int32_t(i);
  }
  return last;  // rounding at the very end of the distribution
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Tokens as i64 [rows, size / rows] on the model's device.
Tensor token_tensor(const nn::GPT& model, const std::vector<int32_t>& tokens, int64_t rows) {
  return from_vector<int64_t>(std::vector<int64_t>(tokens.begin(), tokens.end()),
                              {rows, int64_t(tokens.size()) / rows},
                              TensorOptions(DType::i64).device(model.wte->weight.device()));
}

// The rows of logits [n, V] on the host, in one copy.
std::vector<std::vector<float>> host_rows(const Tensor& logits) {
  const std::vector<float> all = logits.to_vector<float>();
  const size_t V = size_t(logits.size(1));
  std::vector<std::vector<float>> out;
  for (size_t r = 0; r < size_t(logits.size(0)); ++r)
    out.emplace_back(all.begin() + r * V, all.begin() + (r + 1) * V);
  return out;
}

// The logits of the last token of each window, one forward pass per row over the whole
// window: today's path, and the oracle of the cached one.
std::vector<std::vector<float>> logits_uncached(nn::GPT& model,
                                                const std::vector<std::vector<int32_t>>& windows) {
  std::vector<std::vector<float>> out;
  for (const std::vector<int32_t>& w : windows) {
    const int64_t T = int64_t(w.size());
    out.push_back(host_rows(model.forward(token_tensor(model, w, 1)).select(1, T - 1))[0]);
  }
  return out;
}

// Row r's window run through the model into row r of the cache (emptied first).
std::vector<float> prefill(nn::GPT& model, nn::KVCache& cache, int64_t r,
                           const std::vector<int32_t>& window) {
  cache.clear(r);
  return host_rows(model.forward_cached(token_tensor(model, window, 1), cache, r))[0];
}

}  // namespace

std::vector<std::vector<int32_t>> generate_batch(
    nn::GPT& model, const std::vector<std::vector<int32_t>>& prompts, const SampleOptions& o,
    const std::function<void(int64_t, int32_t)>& on_token, SampleStats* stats) {
  FG_CHECK(!prompts.empty(), "generate: no prompts");
  FG_CHECK(o.max_new_tokens >= 0, "generate: --tokens must be >= 0, got ", o.max_new_tokens);
  struct RestoreMode {  // even when a forward throws
    nn::GPT& m;
    bool training;
    ~RestoreMode() { m.train(training); }
  } restore{model, model.is_training()};
  model.eval();
  NoGradGuard ng;
  const int64_t V = model.config.vocab_size_, ctx = model.config.block_size_;
  const int64_t keep = std::max<int64_t>(1, ctx / 2), B = int64_t(prompts.size());
  std::vector<std::vector<int32_t>> windows;
  for (const std::vector<int32_t>& prompt : prompts) {
    FG_CHECK(!prompt.empty(), "generate: a prompt needs at least one token");
    for (int32_t t : prompt)
      FG_CHECK(t >= 0 && t < V, "generate: prompt token ", t, " is outside the vocabulary of ", V);
    windows.emplace_back(prompt.end() - std::min<int64_t>(int64_t(prompt.size()), ctx), prompt.end());
  }
  SampleStats st;
  const Generator gen(o.seed);
  std::unique_ptr<nn::KVCache> cache;
  std::vector<std::vector<float>> logits;
  auto t0 = Clock::now();
  if (o.kv_cache) {
    cache = std::make_unique<nn::KVCache>(model.config, B, ctx,
                                          TensorOptions(model.wte->weight.dtype())
                                              .device(model.wte->weight.device()));
    for (int64_t r = 0; r < B; ++r) logits.push_back(prefill(model, *cache, r, windows[size_t(r)]));
  } else {
    logits = logits_uncached(model, windows);
  }
  for (const auto& w : windows) st.prefill_tokens += int64_t(w.size());
  st.prefill_seconds += seconds_since(t0);

  std::vector<std::vector<int32_t>> out(static_cast<size_t>(B));
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    if (o.stop && o.stop()) break;
    std::vector<int32_t> next(static_cast<size_t>(B));
    for (int64_t r = 0; r < B; ++r) {
      const double u = gen.random_uniform(uint64_t(r), uint64_t(n));
      next[size_t(r)] = sample_from_logits(std::move(logits[size_t(r)]), o.temperature, o.top_k, u, o.top_p);
      out[size_t(r)].push_back(next[size_t(r)]);
      if (on_token) on_token(r, next[size_t(r)]);
    }
    if (n + 1 == o.max_new_tokens) break;  // the last token's logits are not needed
    // Each window takes its new token, or restarts from its last `keep` tokens when full.
    std::vector<bool> restarted(static_cast<size_t>(B), false);
    for (int64_t r = 0; r < B; ++r) {
      std::vector<int32_t>& w = windows[size_t(r)];
      w.push_back(next[size_t(r)]);
      if (int64_t(w.size()) > ctx) {
        w.erase(w.begin(), w.end() - keep);
        restarted[size_t(r)] = true;
        ++st.window_restarts;
      }
    }
    t0 = Clock::now();
    const bool any_restart = std::find(restarted.begin(), restarted.end(), true) != restarted.end();
    if (!o.kv_cache) {
      logits = logits_uncached(model, windows);
    } else if (!any_restart) {  // the common step: one token for every row, one batch
      logits = host_rows(model.forward_cached(token_tensor(model, next, B), *cache, 0));
    } else {
      for (int64_t r = 0; r < B; ++r) {
        if (restarted[size_t(r)]) {
          logits[size_t(r)] = prefill(model, *cache, r, windows[size_t(r)]);
        } else {
          logits[size_t(r)] =
              host_rows(model.forward_cached(token_tensor(model, {next[size_t(r)]}, 1), *cache, r))[0];
        }
      }
    }
    const double dt = seconds_since(t0);
    if (any_restart) {
      int64_t refilled = 0;
      for (int64_t r = 0; r < B; ++r) refilled += restarted[size_t(r)] ? keep : 1;
      st.prefill_tokens += refilled;
      st.prefill_seconds += dt;
    } else {
      st.decode_tokens += B;
      st.decode_seconds += dt;
    }
  }
  if (stats) *stats = st;
  return out;
}

std::vector<int32_t> generate(nn::GPT& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& o, const std::function<void(int32_t)>& on_token) {
  FG_CHECK(!prompt.empty(), "generate: the prompt needs at least one token");
  std::function<void(int64_t, int32_t)> each;
  if (on_token) each = [&](int64_t, int32_t t) { on_token(t); };
  return generate_batch(model, {prompt}, o, each).front();
}

}  // namespace fg::train
