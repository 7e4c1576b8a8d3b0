// Temperature / top-k sampling from a GPT.
#include "train/sample.h"

#include <algorithm>
#include <cmath>

#include "autograd/functions.h"

namespace fg::train {

int32_t sample_from_logits(std::vector<float> logits, double temperature, int64_t top_k, double u) {
  const int64_t V = int64_t(logits.size());
  FG_CHECK(V > 0, "sample: no logits");
  FG_CHECK(temperature >= 0, "sample: temperature must be >= 0, got ", temperature);
  FG_CHECK(top_k >= 0, "sample: top-k must be >= 0, got ", top_k);
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

std::vector<int32_t> generate(nn::GPT& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& o, const std::function<void(int32_t)>& on_token) {
  FG_CHECK(!prompt.empty(), "generate: the prompt needs at least one token");
  FG_CHECK(o.max_new_tokens >= 0, "generate: --tokens must be >= 0, got ", o.max_new_tokens);
  struct RestoreMode {  // even when a forward throws
    nn::GPT& m;
    bool training;
    ~RestoreMode() { m.train(training); }
  } restore{model, model.is_training()};
  model.eval();
  NoGradGuard ng;
  const Device device = model.wte->weight.device();
  const int64_t V = model.config.vocab_size_, ctx = model.config.block_size_;
  for (int32_t t : prompt)
    FG_CHECK(t >= 0 && t < V, "generate: prompt token ", t, " is outside the vocabulary of ", V);
  const Generator gen(o.seed);  // token n draws element n at offset 0
  std::vector<int32_t> seq = prompt, out;
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    if (o.stop && o.stop()) break;
    const int64_t T = std::min<int64_t>(int64_t(seq.size()), ctx);
    std::vector<int64_t> window(seq.end() - T, seq.end());
    Tensor idx = from_vector<int64_t>(window, {1, T}, TensorOptions(DType::i64).device(device));
    Tensor logits = model.forward(idx).select(1, T - 1).select(0, 0);  // [V]
    std::vector<float> host = logits.to_vector<float>();
    double u = gen.random_uniform(0, uint64_t(n));
    int32_t next = sample_from_logits(std::move(host), o.temperature, o.top_k, u);
    seq.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
  }
  return out;
}

}  // namespace fg::train
