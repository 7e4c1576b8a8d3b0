// Generation with a KV cache (nn/kv_cache.h, train/sample.h): the cached forward against the
// plain one, tokens with and without the cache (greedy and sampled, across window restarts,
// batches of prompts of different lengths), top-p, and refusals.
#include "support/test_util.h"
#include "support/train_fixtures.h"

#include <map>
#include <set>

#include "autograd/functions.h"
#include "nn/kv_cache.h"
#include "train/checkpoint.h"
#include "train/sample.h"

using namespace fg;
using namespace fg::train;
using fg::test::rel_err;

namespace {

// A small GQA model (head dim 32, which every CUDA attention kernel takes) in eval mode, with
// its random initial weights.
std::shared_ptr<nn::GPT> small_gpt(Device device, int64_t block_size) {
  auto m = std::make_shared<nn::GPT>(
      nn::GPTConfig().vocab_size(23).block_size(block_size).n_layer(2).n_head(4).n_kv_head(2).n_embd(128));
  m->to(device);
  m->eval();
  return m;
}

// A model trained for 80 steps on the toy corpus (context 16, head dim 32 unless asked for
// another width), in eval mode: its next token depends on the context, and its logits lie far
// enough apart that the cache's other summation order does not flip an argmax, so the
// comparisons below can ask for identical tokens. Trained once per width, on the CPU.
std::shared_ptr<nn::GPT> trained_gpt(Device device, int64_t n_embd = 64) {
  static std::map<int64_t, train::Checkpoint> trained;
  if (!trained.count(n_embd)) {
    test::TempDir d;
    test::write_text(d / "data.txt", test::toy_corpus());
    TrainConfig c = test::toy_config(d / "data.txt");
    c.n_embd = n_embd, c.n_head = 2, c.n_kv_head = 1, c.steps = 80, c.lr = 1e-2, c.warmup = 5;
    std::ostringstream log;
    train::train(c, test::quiet_run(d / "ck", log));
    trained.emplace(n_embd, load_checkpoint(d / "ck", false));
  }
  auto m = model_from_checkpoint(trained.at(n_embd));
  m->to(device);
  m->eval();
  return m;
}

Tensor tokens(const std::vector<int64_t>& t, Device device) {
  return from_vector<int64_t>(t, {1, int64_t(t.size())}, TensorOptions(DType::i64).device(device));
}

// The logits of forward() over `seq`, at its last position.
Tensor last_logits(const nn::GPT& m, const std::vector<int64_t>& seq, Device device) {
  NoGradGuard ng;
  const int64_t T = int64_t(seq.size());
  return m.forward(tokens(seq, device)).select(1, T - 1).select(0, 0);
}

}  // namespace

FG_TEST_ALL_DEVICES("forward_cached: each new token's logits equal forward() over the sequence",
                    "[generate]") {
  auto m = small_gpt(device, 40);
  Generator g(4);
  std::vector<int64_t> a, b;
  for (int i = 0; i < 30; ++i) a.push_back(int64_t(g.random_u64(0, i) % 23));
  for (int i = 0; i < 30; ++i) b.push_back(int64_t(g.random_u64(1, i) % 23));
  nn::KVCache cache(m->config, 2, 40, TensorOptions(DType::f32).device(device));
  // Prefill rows of different lengths (7 and 12), one at a time.
  Tensor la = m->forward_cached(tokens({a.begin(), a.begin() + 7}, device), cache, 0);
  Tensor lb = m->forward_cached(tokens({b.begin(), b.begin() + 12}, device), cache, 1);
  REQUIRE(cache.length(0) == 7);
  REQUIRE(cache.length(1) == 12);
  CHECK(rel_err(la.select(0, 0), last_logits(*m, {a.begin(), a.begin() + 7}, device)) < 1e-5);
  CHECK(rel_err(lb.select(0, 0), last_logits(*m, {b.begin(), b.begin() + 12}, device)) < 1e-5);
  // Then one token per row per step, both rows in one batch.
  for (int64_t s = 0; s < 18; ++s) {
    const int64_t na = 7 + s, nb = 12 + s;
    Tensor l = m->forward_cached(
        from_vector<int64_t>({a[size_t(na)], b[size_t(nb)]}, {2, 1},
                             TensorOptions(DType::i64).device(device)),
        cache, 0);
    INFO("step " << s);
    CHECK(rel_err(l.select(0, 0), last_logits(*m, {a.begin(), a.begin() + na + 1}, device)) < 1e-5);
    CHECK(rel_err(l.select(0, 1), last_logits(*m, {b.begin(), b.begin() + nb + 1}, device)) < 1e-5);
  }
  REQUIRE(cache.length(0) == 25);
  REQUIRE(cache.length(1) == 30);
}

FG_TEST_ALL_DEVICES("generation gives the same tokens with and without the KV cache",
                    "[generate]") {
  // Context 16: 40 new tokens restart the window several times.
  auto m = trained_gpt(device);
  REQUIRE(m->config.block_size_ == 16);
  // Prompts of different lengths (the cached forward goes row by row), one longer than the
  // context; then prompts of one length (one attention call for the whole batch).
  const std::vector<std::vector<int32_t>> mixed = {{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11, 12},
                                                   {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3,
                                                    2, 3, 8, 4}};
  const std::vector<std::vector<int32_t>> equal = {{1, 2, 3}, {7, 5, 3}, {2, 2, 9}};
  for (int c = 0; c < 4; ++c) {
    const std::vector<std::vector<int32_t>>& prompts = c < 2 ? mixed : equal;
    const double temperature = c % 2 ? 0.8 : 0.0;
    SampleOptions o;
    o.max_new_tokens = 40;
    o.temperature = temperature;
    o.top_k = 10;
    o.top_p = 0.9;
    o.kv_cache = true;
    SampleStats cached_stats;
    const auto cached = generate_batch(*m, prompts, o, {}, &cached_stats);
    o.kv_cache = false;
    const auto plain = generate_batch(*m, prompts, o);
    INFO("temperature " << temperature << ", first prompt of " << prompts[0].size() << ", second of "
                        << prompts[1].size());
    REQUIRE(cached.size() == 3);
    for (size_t r = 0; r < 3; ++r) {
      INFO("row " << r);
      CHECK(cached[r].size() == 40);
      CHECK(cached[r] == plain[r]);
    }
    CHECK(cached_stats.window_restarts > 0);
    CHECK(cached_stats.decode_tokens > 0);
    // Row 0 of the batch is what a batch of one gives.
    o.kv_cache = true;
    CHECK(generate(*m, prompts[0], o) == cached[0]);
  }
}

FG_TEST_ALL_DEVICES("decode_step: rows of different lengths step together, lengths on the device",
                    "[generate]") {
  auto m = small_gpt(device, 40);
  Generator g(5);
  std::vector<std::vector<int64_t>> seq(3);
  for (size_t r = 0; r < 3; ++r)
    for (int i = 0; i < 30; ++i) seq[r].push_back(int64_t(g.random_u64(r, uint64_t(i)) % 23));
  nn::KVCache cache(m->config, 3, 36, TensorOptions(DType::f32).device(device));
  const std::vector<int64_t> prompt = {1, 9, 4};  // rows prefilled with 1, 9 and 4 tokens
  for (int64_t r = 0; r < 3; ++r)
    m->forward_cached(tokens({seq[size_t(r)].begin(), seq[size_t(r)].begin() + prompt[size_t(r)]}, device),
                      cache, r);
  const TensorOptions i32 = TensorOptions(DType::i32).device(device);
  for (int64_t s = 0; s < 12; ++s) {
    std::vector<int32_t> tok, pos, used;
    for (int64_t r = 0; r < 3; ++r) {
      const int64_t L = cache.length(r);
      tok.push_back(int32_t(seq[size_t(r)][size_t(L)]));
      pos.push_back(int32_t(L));
      used.push_back(int32_t(L + 1));
    }
    const Tensor l = m->decode_step(from_vector<int32_t>(tok, {3}, i32), from_vector<int32_t>(pos, {3}, i32),
                                    from_vector<int32_t>(used, {3}, i32), cache);
    REQUIRE(l.shape() == Shape{3, 23});
    for (int64_t r = 0; r < 3; ++r) {
      INFO("step " << s << ", row " << r);
      const auto& q = seq[size_t(r)];
      CHECK(rel_err(l.select(0, r), last_logits(*m, {q.begin(), q.begin() + pos[size_t(r)] + 1}, device)) < 1e-5);
      cache.advance(r, 1);
    }
  }
  CHECK(cache.length(0) == 13);
  CHECK(cache.length(2) == 16);
  // Refusals: a position past the cache's capacity 36 (within the context of 40: found by
  // the kernel that writes the cache), inputs of the wrong kind.
  const Tensor one = from_vector<int32_t>({1, 1, 1}, {3}, i32);
  CHECK_THROWS_WITH(m->decode_step(one, from_vector<int32_t>({0, 36, 0}, {3}, i32), one, cache),
                    Catch::Contains("capacity 36"));
  CHECK_THROWS_WITH(m->decode_step(from_vector<int32_t>({1, 1}, {2}, i32), one, one, cache),
                    Catch::Contains("tokens must be i32 [3]"));
  CHECK_THROWS_WITH(m->decode_step(one, one.to(DType::i64), one, cache),
                    Catch::Contains("positions must be i32 [3]"));
  CHECK_THROWS_WITH(cache.advance(0, 24), Catch::Contains("exceed the capacity 36"));
}

FG_TEST_ALL_DEVICES("decode steps replayed from a CUDA graph give the tokens of plain steps",
                    "[generate]") {
  auto m = trained_gpt(device);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11, 12}, {5}};
  for (double temperature : {0.0, 0.8}) {
    SampleOptions o;
    o.max_new_tokens = 40;  // context 16: window restarts between the graphed steps
    o.temperature = temperature;
    o.top_k = 10;
    SampleStats with, without;
    o.cuda_graph = true;
    const auto a = generate_batch(*m, prompts, o, {}, &with);
    o.cuda_graph = false;
    const auto b = generate_batch(*m, prompts, o, {}, &without);
    INFO("temperature " << temperature);
    CHECK(a == b);
    CHECK(with.cuda_graph == device.is_cuda());  // a graph only where there is CUDA
    CHECK_FALSE(without.cuda_graph);
    CHECK(with.decode_tokens == without.decode_tokens);
  }
}

// Head dim 96 (width 192, 2 heads): on CUDA the one-call decode step needs the split-KV kernel,
// which does not take 96, so the sampler goes on with the row-wise cached forward (and says so
// on stderr); the tokens must still be those of generation without the cache.
FG_TEST_ALL_DEVICES("generation at head dim 96 gives the tokens of generation without the cache",
                    "[generate]") {
  auto m = trained_gpt(device, 192);
  REQUIRE(m->config.n_embd_ / m->config.n_head_ == 96);
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {4, 5, 6, 7, 8, 9, 10, 11, 12}};
  SampleOptions o;
  o.max_new_tokens = 24;  // context 16: the window restarts
  o.kv_cache = true;
  SampleStats st;
  const auto cached = generate_batch(*m, prompts, o, {}, &st);
  o.kv_cache = false;
  const auto plain = generate_batch(*m, prompts, o);
  REQUIRE(cached.size() == 2);
  CHECK(cached == plain);
  CHECK(st.decode_tokens > 0);
  CHECK_FALSE(st.cuda_graph);  // on CUDA: no one-call step to capture; on the CPU: no graph
}

TEST_CASE("the window restarts from its last block_size / 2 tokens", "[generate]") {
  auto m = small_gpt(Device::cpu(), 8);
  SampleOptions o;
  o.max_new_tokens = 20;
  o.temperature = 0;
  SampleStats st;
  const auto out = generate_batch(*m, {{1, 2, 3}}, o, {}, &st);
  REQUIRE(out[0].size() == 20);
  // The window holds 3, then grows by one per new token up to 8, restarting at 4 when the 9th
  // would not fit: the 6th, 11th and 16th new tokens restart it (19 windows follow the first).
  CHECK(st.window_restarts == 3);
  CHECK(st.prefill_tokens == 3 + 3 * 4);
  CHECK(st.decode_tokens == 19 - 3);
}

TEST_CASE("top-p keeps the most likely tokens up to the probability asked for", "[generate]") {
  // p = softmax(logits) = 0.089, 0.657, 0.242, 0.012.
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, -1.0f};
  auto seen = [&](double top_p, int64_t top_k) {
    std::set<int32_t> s;
    for (int i = 0; i < 200; ++i) s.insert(sample_from_logits(logits, 1.0, top_k, (i + 0.5) / 200, top_p));
    return s;
  };
  CHECK(seen(0.5, 0) == std::set<int32_t>{1});        // the most likely token alone reaches 0.5
  CHECK(seen(0.8, 0) == std::set<int32_t>{1, 2});     // 0.657 + 0.242
  CHECK(seen(0.9, 0) == std::set<int32_t>{0, 1, 2});  // 0.899 falls short of 0.9
  CHECK(seen(1.0, 0) == std::set<int32_t>{0, 1, 2, 3});
  CHECK(seen(0.95, 2) == std::set<int32_t>{1, 2});    // top-k first, then top-p
  // Renormalised over tokens 1 and 2 (0.731, 0.269): u 0.72 still draws token 1.
  CHECK(sample_from_logits(logits, 1.0, 0, 0.72, 0.8) == 1);
  CHECK(sample_from_logits(logits, 1.0, 0, 0.74, 0.8) == 2);
  CHECK_THROWS_WITH(sample_from_logits(logits, 1.0, 0, 0.5, 0.0), Catch::Contains("top-p"));
  CHECK_THROWS_WITH(sample_from_logits(logits, 1.0, 0, 0.5, 1.5), Catch::Contains("top-p"));
}

TEST_CASE("forward_cached refuses what it cannot do", "[generate]") {
  auto m = small_gpt(Device::cpu(), 8);
  nn::KVCache cache(m->config, 1, 8, TensorOptions(DType::f32));
  CHECK_THROWS_WITH(m->forward_cached(tokens({1, 2, 3, 4, 5, 6, 7, 8, 9}, Device::cpu()), cache),
                    Catch::Contains("capacity 8"));
  CHECK(cache.length(0) == 0);  // nothing written
  CHECK_THROWS_WITH(m->forward_cached(tokens({1}, Device::cpu()), cache, 1),
                    Catch::Contains("outside the cache's batch"));
  nn::KVCache wrong(m->config, 1, 8, TensorOptions(DType::f64));
  CHECK_THROWS_WITH(m->forward_cached(tokens({1}, Device::cpu()), wrong),
                    Catch::Contains("share the dtype and device"));
  CHECK_THROWS_WITH(nn::KVCache(m->config, 1, 9, TensorOptions(DType::f32)),
                    Catch::Contains("context (block_size) 8"));
  m->train();
  CHECK_THROWS_WITH(m->forward_cached(tokens({1}, Device::cpu()), cache),
                    Catch::Contains("training mode"));
}
