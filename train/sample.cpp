// Temperature / top-k / top-p sampling from a GPT, batched, with or without a KV cache.
#include "train/sample.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "autograd/functions.h"
#include "nn/kv_cache.h"
#include "tensor/graph.h"

namespace fg::train {

namespace {
// The sampling options every draw checks, greedy or not.
void check_sampling(double temperature, int64_t top_k, double top_p) {
  FG_CHECK(temperature >= 0, "sample: temperature must be >= 0, got ", temperature);
  FG_CHECK(top_k >= 0, "sample: top-k must be >= 0, got ", top_k);
  FG_CHECK(top_p > 0 && top_p <= 1, "sample: top-p must be in (0, 1], got ", top_p);
}
}  // namespace

int32_t sample_from_logits(std::vector<float> logits, double temperature, int64_t top_k, double u,
                           double top_p) {
  const int64_t V = int64_t(logits.size());
  FG_CHECK(V > 0, "sample: no logits");
  check_sampling(temperature, top_k, top_p);
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

// The model's dtype on the model's device: the options of the logits and of the KV cache.
TensorOptions model_options(const nn::GPT& model) {
  return TensorOptions(model.wte->weight.dtype()).device(model.wte->weight.device());
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
// window: today's path, and the oracle of the cached one. [rows, V] on the model's device.
Tensor logits_uncached(nn::GPT& model, const std::vector<std::vector<int32_t>>& windows) {
  const int64_t V = model.config.vocab_size_, n = int64_t(windows.size());
  Tensor out = empty({n, V}, model_options(model));
  for (int64_t r = 0; r < n; ++r) {
    const std::vector<int32_t>& w = windows[size_t(r)];
    const int64_t T = int64_t(w.size());
    out.narrow(0, r, 1).copy_(model.forward(token_tensor(model, w, 1)).select(1, T - 1));
  }
  return out;
}

// Rows `rows` of the cache emptied and their windows run through the model into them, as few
// forward passes as there are runs of consecutive rows with windows of one length; their last
// logits go to the same rows of `logits` [B, V].
void prefill(nn::GPT& model, nn::KVCache& cache, const std::vector<int64_t>& rows,
             const std::vector<std::vector<int32_t>>& windows, Tensor& logits) {
  for (size_t a = 0; a < rows.size();) {
    size_t e = a + 1;
    const size_t len = windows[size_t(rows[a])].size();
    while (e < rows.size() && rows[e] == rows[e - 1] + 1 && windows[size_t(rows[e])].size() == len) ++e;
    std::vector<int32_t> tokens;
    for (size_t i = a; i < e; ++i) {
      cache.clear(rows[i]);
      const std::vector<int32_t>& w = windows[size_t(rows[i])];
      tokens.insert(tokens.end(), w.begin(), w.end());
    }
    const int64_t n = int64_t(e - a);
    logits.narrow(0, rows[a], n).copy_(model.forward_cached(token_tensor(model, tokens, n), cache, rows[a]));
    a = e;
  }
}

// The next token of every row from its logits [B, V]: greedy as one argmax on the logits'
// device (B integers come back, not B x V logits); otherwise the host samples each row.
std::vector<int32_t> next_tokens(const Tensor& logits, const SampleOptions& o, const Generator& gen,
                                 int64_t step) {
  const int64_t B = logits.size(0);
  std::vector<int32_t> next(static_cast<size_t>(B));
  check_sampling(o.temperature, o.top_k, o.top_p);  // the greedy path checks them too
  if (o.temperature == 0) {
    const std::vector<int64_t> best = logits.argmax(1).to_vector<int64_t>();
    for (int64_t r = 0; r < B; ++r) next[size_t(r)] = int32_t(best[size_t(r)]);
    return next;
  }
  std::vector<std::vector<float>> rows = host_rows(logits);
  for (int64_t r = 0; r < B; ++r) {
    const double u = gen.random_uniform(uint64_t(r), uint64_t(step));
    next[size_t(r)] = sample_from_logits(std::move(rows[size_t(r)]), o.temperature, o.top_k, u, o.top_p);
  }
  return next;
}

// The common decode step of generate_batch: every row's newest token through
// GPT::decode_step, whose inputs sit in one i32 buffer [3, B] on the model's device (tokens,
// positions, positions + 1), filled by one copy per step. On a CUDA device (unless turned off)
// the step is captured as a CUDA graph on its second use, the first having run it kernel by
// kernel so that every lazily made plan, handle and cached block exists before the capture,
// and replayed from then on: one launch per step, with the lengths read on the device.
class DecodeStep {
 public:
  DecodeStep(const nn::GPT& model, nn::KVCache& cache, bool graph)
      : model_(model), cache_(cache), use_graph_(graph && model.wte->weight.is_cuda()),
        io_(empty({3, cache.batch()}, TensorOptions(DType::i32).device(model.wte->weight.device()))) {}

  // The logits [B, V] after each row's next token; the cache's lengths advance by one.
  Tensor operator()(const std::vector<int32_t>& tokens) {
    if (!by_rows_) {
      try {
        return step(tokens);
      } catch (const Error& e) {
        // A model whose decode shape the device-length attention cannot take (on CUDA: more
        // than 32 query heads per kv head, say): say so once and go on with forward_cached.
        if (uses_ > 0) throw;
        std::fprintf(stderr, "flashgrad: the one-call decode step cannot run this model (%s); "
                     "decoding with the row-wise cached forward\n", e.what());
        by_rows_ = true;
      }
    }
    return model_.forward_cached(token_tensor(model_, tokens, cache_.batch()), cache_, 0);
  }
  bool graphed() const { return graph_.captured(); }

 private:
  Tensor step(const std::vector<int32_t>& tokens) {
    const int64_t B = cache_.batch();
    std::vector<int32_t> host(size_t(3 * B));
    for (int64_t r = 0; r < B; ++r) {
      host[size_t(r)] = tokens[size_t(r)];
      host[size_t(B + r)] = int32_t(cache_.length(r));
      host[size_t(2 * B + r)] = int32_t(cache_.length(r) + 1);
    }
    io_.copy_(from_vector<int32_t>(host, {3, B}, TensorOptions(DType::i32)));
    auto run = [&] {
      logits_ = model_.decode_step(io_.select(0, 0), io_.select(0, 1), io_.select(0, 2), cache_);
    };
    if (graph_.captured()) {
      graph_.replay();
    } else if (use_graph_ && uses_ > 0) {
      try {
        graph_.capture(run);
        graph_.replay();
      } catch (const Error& e) {  // never silently: say so once, then go on without the graph
        std::fprintf(stderr, "flashgrad: the decode step could not be captured as a CUDA graph "
                     "(%s); decoding kernel by kernel\n", e.what());
        use_graph_ = false;
        run();
      }
    } else {
      run();
    }
    ++uses_;
    for (int64_t r = 0; r < B; ++r) cache_.advance(r, 1);
    return logits_;
  }

  const nn::GPT& model_;
  nn::KVCache& cache_;
  bool use_graph_;
  Tensor io_, logits_;
  CudaGraph graph_;
  int64_t uses_ = 0;
  bool by_rows_ = false;  // decode_step could not run: forward_cached instead
};

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
  std::unique_ptr<DecodeStep> decode;
  std::vector<int64_t> all_rows(static_cast<size_t>(B));
  std::iota(all_rows.begin(), all_rows.end(), int64_t(0));
  Tensor logits;  // [B, V], each row's next-token logits
  auto t0 = Clock::now();
  if (o.kv_cache) {
    const TensorOptions opts = model_options(model);
    cache = std::make_unique<nn::KVCache>(model.config, B, ctx, opts);
    logits = empty({B, V}, opts);
    prefill(model, *cache, all_rows, windows, logits);
    decode = std::make_unique<DecodeStep>(model, *cache, o.cuda_graph);
  } else {
    logits = logits_uncached(model, windows);
  }
  for (const auto& w : windows) st.prefill_tokens += int64_t(w.size());
  st.prefill_seconds += seconds_since(t0);

  std::vector<std::vector<int32_t>> out(static_cast<size_t>(B));
  bool from_prefill = true;  // whether the logits at hand came from a prefill or a decode step
  for (int64_t n = 0; n < o.max_new_tokens; ++n) {
    if (o.stop && o.stop()) break;
    // Drawing the tokens waits for the GPU work that made the logits: it counts with that work.
    t0 = Clock::now();
    const std::vector<int32_t> next = next_tokens(logits, o, gen, n);
    (from_prefill ? st.prefill_seconds : st.decode_seconds) += seconds_since(t0);
    for (int64_t r = 0; r < B; ++r) {
      out[size_t(r)].push_back(next[size_t(r)]);
      if (on_token) on_token(r, next[size_t(r)]);
    }
    if (n + 1 == o.max_new_tokens) break;  // the last token's logits are not needed
    // Each window takes its new token, or restarts from its last `keep` tokens when full.
    std::vector<int64_t> restarted, stepped;
    for (int64_t r = 0; r < B; ++r) {
      std::vector<int32_t>& w = windows[size_t(r)];
      w.push_back(next[size_t(r)]);
      if (int64_t(w.size()) > ctx) {
        w.erase(w.begin(), w.end() - keep);
        restarted.push_back(r);
        ++st.window_restarts;
      } else {
        stepped.push_back(r);
      }
    }
    t0 = Clock::now();
    if (!o.kv_cache) {
      logits = logits_uncached(model, windows);
    } else if (restarted.empty()) {  // the common step: one token for every row, one batch
      logits = (*decode)(next);
    } else {
      prefill(model, *cache, restarted, windows, logits);
      for (int64_t r : stepped)
        logits.narrow(0, r, 1).copy_(
            model.forward_cached(token_tensor(model, {next[size_t(r)]}, 1), *cache, r));
    }
    const double dt = seconds_since(t0);
    from_prefill = !restarted.empty();
    if (!restarted.empty()) {
      st.prefill_tokens += int64_t(restarted.size()) * keep + int64_t(stepped.size());
      st.prefill_seconds += dt;
    } else {
      st.decode_tokens += B;
      st.decode_seconds += dt;
    }
  }
  st.cuda_graph = decode && decode->graphed();
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
