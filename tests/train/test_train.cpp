// Tests of train/: AdamW against hand-computed numbers, the LR schedule, clipping, tokenizers,
// data splits and batches, safetensors and checkpoints (bit-exact round trips, corruption),
// exact resume, Ctrl-C, the corpus builder, sampling, and (on a GPU) CUDA AdamW and training.
#include "support/test_util.h"
#include "support/train_fixtures.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "train/checkpoint.h"
#include "train/corpus.h"
#include "train/data.h"
#include "train/fileio.h"
#include "train/optim.h"
#include "train/safetensors.h"
#include "train/sample.h"
#include "train/tokenizer.h"
#include "train/trainer.h"

using namespace fg;
using namespace fg::train;
namespace fs = std::filesystem;

namespace {

using test::quiet_run;
using test::TempDir;
using test::toy_config;
using test::toy_corpus;
using test::write_text;

// The toy corpus written to <d>/data.txt, and the toy config that trains on it.
TrainConfig toy_run(const TempDir& d) {
  write_text(d / "data.txt", toy_corpus());
  return toy_config(d / "data.txt");
}

// A resume of the checkpoint in `dir`, with `keys` given explicitly (as flags would be).
RunOptions resume_run(const std::string& dir, std::ostream& log, std::set<std::string> keys = {}) {
  RunOptions r = quiet_run(dir, log);
  r.resume = true;
  r.explicit_keys = std::move(keys);
  return r;
}

// An output stream that asks the run to stop, as Ctrl-C does, once `marker` and `after` more
// characters have been written to it: it sees what train() prints when train() prints it.
class StopAfter : public std::streambuf {
 public:
  StopAfter(std::string marker, size_t after) : marker_(std::move(marker)), after_(after) {}
  std::string text;

 protected:
  int overflow(int c) override {
    if (c != EOF) append(std::string(1, char(c)));
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    append(std::string(s, size_t(n)));
    return n;
  }

 private:
  void append(const std::string& s) {
    text += s;
    const size_t at = text.find(marker_);
    if (at != std::string::npos && text.size() >= at + marker_.size() + after_) request_stop();
  }
  std::string marker_;
  size_t after_;
};

std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = ops::contiguous(t.device().is_cpu() ? t : ops::to_device(t, Device::cpu()));
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return std::vector<uint8_t>(p, p + c.nbytes());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// AdamW

TEST_CASE("AdamW: one and two steps against hand-computed numbers", "[train]") {
  // w (2-D, decayed) = [[1, -2], [0.5, 3]], b (1-D, not decayed) = [1, -1].
  Tensor w = from_vector<float>({1, -2, 0.5f, 3}, {2, 2}).set_requires_grad(true);
  Tensor b = from_vector<float>({1, -1}, {2}).set_requires_grad(true);
  AdamW opt({{"w", w}, {"b", b}}, AdamWOptions().lr(0.1).betas(0.9, 0.999).eps(1e-8).weight_decay(0.1));
  REQUIRE(opt.states()[0].decay);
  REQUIRE_FALSE(opt.states()[1].decay);

  // Step 1 with g = [[0.5, -0.25], [1, 0]] and [2, -4]. The first Adam step moves each element
  // by lr * g / (|g| + eps) = 0.1 * sign(g) (0 where g == 0), after decay by (1 - lr * wd).
  w.set_grad(from_vector<float>({0.5f, -0.25f, 1, 0}, {2, 2}));
  b.set_grad(from_vector<float>({2, -4}, {2}));
  opt.step();
  std::vector<double> w1 = {1 * 0.99 - 0.1, -2 * 0.99 + 0.1, 0.5 * 0.99 - 0.1, 3 * 0.99};
  std::vector<double> b1 = {1 - 0.1, -1 + 0.1};
  auto wv = w.to_vector<double>(), bv = b.to_vector<double>();
  for (int i = 0; i < 4; ++i) REQUIRE(std::fabs(wv[size_t(i)] - w1[size_t(i)]) < 1e-6);
  for (int i = 0; i < 2; ++i) REQUIRE(std::fabs(bv[size_t(i)] - b1[size_t(i)]) < 1e-6);

  // Step 2 with the same gradients for b: m = 0.19 g, v = 0.001999 g^2,
  // m_hat = 0.19 / 0.19 g = g, v_hat = g^2: again a move of 0.1 * sign(g).
  // For w use a new gradient g2 = [[-0.5, 0, 0, 1]] and compute by the formulas.
  std::vector<double> g1 = {0.5, -0.25, 1, 0}, g2 = {-0.5, 0, 0, 1};
  w.set_grad(from_vector<float>({-0.5f, 0, 0, 1}, {2, 2}));
  b.set_grad(from_vector<float>({2, -4}, {2}));
  opt.step();
  REQUIRE(opt.step_count() == 2);
  wv = w.to_vector<double>();
  bv = b.to_vector<double>();
  for (int i = 0; i < 4; ++i) {
    double m = 0.9 * (0.1 * g1[size_t(i)]) + 0.1 * g2[size_t(i)];
    double v = 0.999 * (0.001 * g1[size_t(i)] * g1[size_t(i)]) + 0.001 * g2[size_t(i)] * g2[size_t(i)];
    double mhat = m / (1 - 0.81), vhat = v / (1 - 0.999 * 0.999);
    double expect = w1[size_t(i)] * 0.99 - 0.1 * mhat / (std::sqrt(vhat) + 1e-8);
    REQUIRE(std::fabs(wv[size_t(i)] - expect) < 1e-6 * (1 + std::fabs(expect)));
  }
  REQUIRE(std::fabs(bv[0] - (0.9 - 0.1)) < 1e-6);
  REQUIRE(std::fabs(bv[1] - (-0.9 + 0.1)) < 1e-6);
  // The moments are stored for checkpoints.
  auto st = opt.state_tensors();
  REQUIRE(st.size() == 4);
  REQUIRE(st[0].first == "exp_avg.w");
  REQUIRE(std::fabs(st[2].second.to_vector<double>()[0] - 0.19 * 2) < 1e-6);
}

TEST_CASE("AdamW: grad_scale equals pre-scaled gradients; bf16 keeps an fp32 master", "[train]") {
  Tensor a = from_vector<float>({0.3f, -0.7f, 1.1f}, {3}).set_requires_grad(true);
  Tensor b = from_vector<float>({0.3f, -0.7f, 1.1f}, {3}).set_requires_grad(true);
  AdamW oa({{"a", a}}, AdamWOptions().lr(0.01)), ob({{"b", b}}, AdamWOptions().lr(0.01));
  a.set_grad(from_vector<float>({1.0f, 2.0f, -3.0f}, {3}));
  b.set_grad(from_vector<float>({0.25f, 0.5f, -0.75f}, {3}));
  oa.step(0.25);
  ob.step();
  REQUIRE(bytes_of(a) == bytes_of(b));

  Tensor h = from_vector<float>({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2}).to(DType::bf16).detach();
  h.set_requires_grad(true);
  AdamW oh({{"h", h}}, AdamWOptions().lr(1e-4).weight_decay(0));
  REQUIRE(oh.states()[0].master.dtype() == DType::f32);
  for (int i = 0; i < 3; ++i) {
    h.set_grad(full({2, 2}, 1.0, TensorOptions(DType::bf16)));
    oh.step();
  }
  // 3 steps of ~1e-4 each: too small to show in bf16 near 1..4, but the master moved.
  auto master = oh.states()[0].master.to_vector<double>();
  REQUIRE(std::fabs(master[0] - (1.0 - 3e-4)) < 1e-6);
  REQUIRE(h.to_vector<double>()[0] == 1.0);
  REQUIRE(bytes_of(h) == bytes_of(ops::to_dtype(oh.states()[0].master, DType::bf16)));
}

TEST_CASE("LR schedule: linear warm-up, cosine to min_lr, then flat", "[train]") {
  LRSchedule s{1e-3, 1e-4, 10, 110};
  REQUIRE(s.at(0) == Approx(1e-4));
  REQUIRE(s.at(4) == Approx(5e-4));
  REQUIRE(s.at(9) == Approx(1e-3));
  REQUIRE(s.at(10) == Approx(1e-3));
  REQUIRE(s.at(60) == Approx(5.5e-4));  // halfway down the cosine
  REQUIRE(s.at(110) == Approx(1e-4));
  REQUIRE(s.at(500) == Approx(1e-4));
  for (int64_t t = 11; t < 110; ++t) REQUIRE(s.at(t) < s.at(t - 1));
  LRSchedule no_warmup{2.0, 0.0, 0, 4};
  REQUIRE(no_warmup.at(0) == Approx(2.0));
  REQUIRE(no_warmup.at(2) == Approx(1.0));
}

TEST_CASE("Gradient norm and clipping", "[train]") {
  Tensor a = zeros({2}).set_requires_grad(true), b = zeros({1, 2}).set_requires_grad(true);
  Tensor c = zeros({3}).set_requires_grad(true);  // no gradient: skipped
  a.set_grad(from_vector<float>({3, 0}, {2}));
  b.set_grad(from_vector<float>({0, 4}, {1, 2}));
  REQUIRE(grad_norm({a, b, c}) == Approx(5.0));
  REQUIRE(clip_coefficient(5.0, 10.0) == 1.0);
  REQUIRE(clip_coefficient(5.0, 0.0) == 1.0);
  REQUIRE(clip_coefficient(5.0, 1.0) == Approx(0.2).epsilon(1e-5));
  double before = clip_grad_norm_({a, b, c}, 1.0);
  REQUIRE(before == Approx(5.0));
  REQUIRE(grad_norm({a, b}) == Approx(1.0).epsilon(1e-5));
  REQUIRE(a.grad().to_vector<double>()[0] == Approx(0.6).epsilon(1e-5));
}

// ---------------------------------------------------------------------------------------------
// tokenizers and data

TEST_CASE("Tokenizers: char (UTF-8) and byte round trips, JSON, unknown characters", "[train]") {
  const std::string text = "héllo wörld ✓\n\tok";
  CharTokenizer ct = CharTokenizer::build(text);
  REQUIRE(ct.vocab_size() == 13);  // h é l o ' ' w ö r d ✓ \n \t k
  auto ids = ct.encode(text);
  REQUIRE(ids.size() == 17);  // code points, not bytes
  REQUIRE(ct.decode(ids) == text);
  REQUIRE(ct.encode("\t")[0] == 0);  // sorted by code point: '\t' < '\n' < ' ' < ...
  REQUIRE_THROWS_WITH(ct.encode("hz"), Catch::Contains("'z'") && Catch::Contains("not in the tokenizer"));
  auto back = Tokenizer::from_json(ct.to_json());
  REQUIRE(back->type() == "char");
  REQUIRE(back->encode(text) == ids);

  ByteTokenizer bt;
  auto bids = bt.encode(text);
  REQUIRE(bids.size() == text.size());
  REQUIRE(bt.decode(bids) == text);
  REQUIRE(Tokenizer::from_json(bt.to_json())->vocab_size() == 256);

  // Invalid UTF-8 reads as Latin-1.
  auto cps = utf8_decode(std::string("a\xff") + "b");
  REQUIRE(cps == std::vector<uint32_t>{'a', 0xff, 'b'});
  REQUIRE_THROWS_AS(Tokenizer::from_json(nlohmann::json{{"type", "wordpiece"}}), Error);
  REQUIRE_THROWS_AS(Tokenizer::from_json(nlohmann::json{{"type", "char"}, {"vocab_size", 2},
                                                        {"code_points", {66, 65}}}), Error);
}

TEST_CASE("Train/val split and random batches", "[train]") {
  std::vector<int32_t> tok(1000);
  for (int i = 0; i < 1000; ++i) tok[size_t(i)] = i;
  TextSplits s = split_tokens(tok, 16, 0.1, "x");
  REQUIRE(s.train.size() == 900);
  REQUIRE(s.val.size() == 100);
  REQUIRE(s.val.front() == 900);
  REQUIRE_THROWS_WITH(split_tokens(std::vector<int32_t>(100), 16, 0.1, "short.txt"),
                      Catch::Contains("short.txt") && Catch::Contains("too short") &&
                          Catch::Contains("at least 161"));
  REQUIRE_THROWS_WITH(split_tokens({}, 16, 0.1, "empty.txt"), Catch::Contains("empty"));

  // Both parts too short at any fraction: a smaller context is the way out.
  REQUIRE_THROWS_WITH(split_tokens(std::vector<int32_t>(100), 64, 0.1, "short.txt"),
                      Catch::Contains("use --block-size 49 or less, or a longer text"));

  Generator g1(5), g2(5);
  Batch a = get_batch(s.train, 8, 16, g1, Device::cpu());
  Batch b = get_batch(s.train, 8, 16, g2, Device::cpu());
  REQUIRE(g1.offset() == 1);
  REQUIRE(a.x.shape() == Shape{8, 16});
  REQUIRE(a.x.dtype() == DType::i64);
  REQUIRE(a.x.to_vector<int64_t>() == b.x.to_vector<int64_t>());
  auto x = a.x.to_vector<int64_t>(), y = a.y.to_vector<int64_t>();
  std::set<int64_t> starts;
  for (int r = 0; r < 8; ++r) {
    starts.insert(x[size_t(r * 16)]);
    for (int t = 0; t < 16; ++t) {
      REQUIRE(y[size_t(r * 16 + t)] == x[size_t(r * 16 + t)] + 1);  // next token
      if (t > 0) REQUIRE(x[size_t(r * 16 + t)] == x[size_t(r * 16 + t - 1)] + 1);
      REQUIRE(y[size_t(r * 16 + t)] < 900);
    }
  }
  REQUIRE(starts.size() > 4);  // random starts
  Batch c = get_batch(s.train, 8, 16, g1, Device::cpu());  // the next offset: other windows
  REQUIRE(c.x.to_vector<int64_t>() != a.x.to_vector<int64_t>());
}

TEST_CASE("A tiny val_fraction is refused at once, suggesting one that fits", "[train]") {
  // The minimum size for val_fraction 1e-9 is 65 billion tokens; finding it must not take
  // time in proportion to it.
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE_THROWS_WITH(split_tokens(std::vector<int32_t>(16000), 64, 1e-9, "small.txt"),
                      Catch::Contains("small.txt") && Catch::Contains("too short") &&
                          Catch::Contains("at least 64000005625 tokens at --val-fraction 1e-09") &&
                          Catch::Contains("use --val-fraction 0.1 (any value from 0.005 to 0.995"));
  REQUIRE_THROWS_WITH(split_tokens(std::vector<int32_t>(16000), 64, 1e-300, "small.txt"),
                      Catch::Contains("more than 2^62 tokens"));
  // At the edge of the suggested range the split works.
  REQUIRE(split_tokens(std::vector<int32_t>(16000), 64, 0.005, "x").val.size() >= 65);
  REQUIRE(split_tokens(std::vector<int32_t>(16000), 64, 0.995, "x").train.size() >= 65);
  REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
}

TEST_CASE("Settings: every number in its stated range, non-finite ones refused", "[train]") {
  REQUIRE_NOTHROW(TrainConfig().validate());
  auto refused = [](auto change, const std::string& message) {
    TrainConfig c;
    change(c);
    REQUIRE_THROWS_WITH(c.validate(), Catch::Contains(message));
  };
  refused([](TrainConfig& c) { c.eps = INFINITY; }, "--eps must be a finite number > 0, got inf");
  refused([](TrainConfig& c) { c.lr = INFINITY; }, "--lr must be a finite number > 0, got inf");
  refused([](TrainConfig& c) { c.weight_decay = INFINITY; }, "--weight-decay must be a finite number >= 0");
  refused([](TrainConfig& c) { c.dropout = NAN; }, "--dropout must be a number in [0, 1), got nan");
  refused([](TrainConfig& c) { c.steps = 2000000000; },
          "--steps must be a whole number from 1 to 1000000000, got 2000000000");
  refused([](TrainConfig& c) { c.val_fraction = 1; }, "--val-fraction must be a number in (0, 1)");
  refused([](TrainConfig& c) { c.min_lr = 1; }, "--min-lr must not exceed --lr");
  refused([](TrainConfig& c) { c.lr = 0.5; c.weight_decay = 2; }, "--weight-decay times --lr");

  // As typed on a command line: strict decimal whole numbers, no sign on unsigned ones.
  const NumberRange steps = *setting_range("steps"), seed = *setting_range("seed");
  std::string canonical;
  REQUIRE(steps.check_text("010", &canonical).empty());
  REQUIRE(canonical == "10");  // decimal, never octal
  for (const char* bad : {"0", "1e3", "0x10", "1.5", "", " 5", "99999999999999999999", "nan"})
    REQUIRE(steps.check_text(bad) == steps.refusal(bad[0] ? bad : ""));
  REQUIRE(seed.check_text("18446744073709551615", &canonical).empty());
  REQUIRE(seed.check_text("-1") ==
          "--seed must be a whole number from 0 to 18446744073709551615, got -1");
  REQUIRE(seed.check_text("18446744073709551616") != "");
  const NumberRange lr = *setting_range("lr");
  REQUIRE(lr.check_text("3e-4").empty());
  for (const char* bad : {"inf", "-inf", "nan", "1e400", "0", "-1", "3e-4x"})
    REQUIRE(lr.check_text(bad) == lr.refusal(bad));
  REQUIRE(setting_range("data") == nullptr);
}

TEST_CASE("The fortunes corpus: sorted files, separators dropped, written atomically", "[train]") {
  TempDir d;
  fs::create_directories(d / "fortunes");
  write_text(d / "fortunes/b.u8", "second\n%\nthird\n");
  write_text(d / "fortunes/a.u8", "first one\n%\n");
  write_text(d / "fortunes/a.dat", "BINARY");
  write_text(d / "fortunes/zzz", "plain file ignored when .u8 files exist\n");
  size_t n = build_fortunes_corpus(d / "out/fortunes.txt", d / "fortunes");
  std::string text = read_file(d / "out/fortunes.txt");
  REQUIRE(text == "first one\nsecond\nthird\n");
  REQUIRE(n == text.size());
  // Without .u8 files, the plain non-.dat files are used.
  fs::create_directories(d / "plain");
  write_text(d / "plain/x", "% not a separator\n%\nx\n");
  write_text(d / "plain/x.dat", "BINARY");
  build_fortunes_corpus(d / "p.txt", d / "plain");
  REQUIRE(read_file(d / "p.txt") == "% not a separator\nx\n");
  REQUIRE_THROWS_WITH(build_fortunes_corpus(d / "q.txt", d / "nope"), Catch::Contains("fortunes"));
}

// ---------------------------------------------------------------------------------------------
// safetensors and checkpoints

TEST_CASE("safetensors: bit-exact round trip and the documented layout", "[train]") {
  TempDir d;
  Generator g(1);
  Tensor f32 = randn({3, 5}, TensorOptions(DType::f32), &g);
  Tensor f64 = randn({7}, TensorOptions(DType::f64), &g);
  Tensor bf = randn({2, 3}, TensorOptions(DType::f32), &g).to(DType::bf16);
  Tensor i64 = from_vector<int64_t>({-1, 5, 1LL << 40}, {3}, TensorOptions(DType::i64));
  Tensor empty_t = zeros({0, 4});
  Tensor strided = f32.transpose(0, 1);  // written in logical order
  NamedTensors ts = {{"w", f32}, {"d", f64}, {"h", bf}, {"i", i64}, {"e", empty_t}, {"t", strided}};
  save_safetensors(d / "x.safetensors", ts, {{"step", "12"}});
  std::string raw = read_file(d / "x.safetensors");
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= uint64_t(uint8_t(raw[size_t(i)])) << (8 * i);
  REQUIRE(len % 8 == 0);
  auto header = nlohmann::json::parse(raw.substr(8, len));
  REQUIRE(header["w"]["dtype"] == "F32");
  REQUIRE(header["h"]["dtype"] == "BF16");
  REQUIRE(header["w"]["shape"] == std::vector<int64_t>{3, 5});
  REQUIRE(header["__metadata__"]["step"] == "12");
  auto offs = header["w"]["data_offsets"].get<std::vector<size_t>>();
  REQUIRE(std::memcmp(raw.data() + 8 + len + offs[0], f32.data_ptr(), 60) == 0);

  SafetensorsData back = load_safetensors(d / "x.safetensors");
  REQUIRE(back.metadata.at("step") == "12");
  for (auto& [name, t] : ts) {
    INFO(name);
    REQUIRE(back.tensors.at(name).shape() == t.shape());
    REQUIRE(back.tensors.at(name).dtype() == t.dtype());
    REQUIRE(bytes_of(back.tensors.at(name)) == bytes_of(t));
  }
}

TEST_CASE("safetensors: truncated or corrupt files are rejected with a reason", "[train]") {
  std::string good = safetensors_serialize({{"a", ones({4, 4})}, {"b", zeros({3})}});
  REQUIRE_NOTHROW(safetensors_parse(good, "good"));
  REQUIRE_THROWS_WITH(safetensors_parse(good.substr(0, 5), "f"), Catch::Contains("truncated"));
  REQUIRE_THROWS_WITH(safetensors_parse(good.substr(0, good.size() - 4), "f"),
                      Catch::Contains("truncated"));
  REQUIRE_THROWS_WITH(safetensors_parse(good + "xx", "f"), Catch::Contains("unexpected bytes"));
  std::string bad_len = good;
  bad_len[7] = char(0x7f);
  REQUIRE_THROWS_WITH(safetensors_parse(bad_len, "f"), Catch::Contains("header claims"));
  std::string bad_json = good;
  bad_json[8] = '[';
  REQUIRE_THROWS_WITH(safetensors_parse(bad_json, "f"), Catch::Contains("corrupt"));
  auto with_header = [](const std::string& h) {
    std::string s;
    uint64_t len = h.size();
    for (int i = 0; i < 8; ++i) s.push_back(char((len >> (8 * i)) & 0xff));
    return s + h + std::string(16, '\0');
  };
  // Headers that parse as JSON but describe impossible data, and what the refusal says.
  const std::pair<const char*, const char*> bad_headers[] = {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       "overlap or gap"},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", "needs 12 bytes"},
      {R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}})", "U8"},
      // Sizes and offsets are whole numbers that fit: not reals, not negative offsets.
      {R"({"a":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]}})",
       "tensor 'a' shape must be a whole number"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[1e30,16]}})",
       "tensor 'a' data_offsets must be a whole number"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[-4,16]}})",
       "tensor 'a' data_offsets must be a whole number"},
  };
  for (const auto& [header, says] : bad_headers) {
    INFO(header);
    REQUIRE_THROWS_WITH(safetensors_parse(with_header(header), "f"), Catch::Contains(says));
  }
}

TEST_CASE("Training writes a checkpoint that round-trips bit-exactly", "[train]") {
  TempDir d;
  TrainConfig cfg = toy_run(d);
  cfg.steps = 6;
  std::ostringstream log;
  TrainResult r = train::train(cfg, quiet_run(d / "ckpt", log));
  REQUIRE(r.end_step == 6);
  REQUIRE_FALSE(r.interrupted);
  INFO(log.str());
  REQUIRE(has_checkpoint(d / "ckpt"));
  REQUIRE(file_exists(d / "ckpt/model-00000006.safetensors"));
  REQUIRE(file_exists(d / "ckpt/optimizer-00000006.safetensors"));

  Checkpoint c = load_checkpoint(d / "ckpt", true);
  REQUIRE(c.state.step == 6);
  REQUIRE(c.config.n_embd == 32);
  REQUIRE(c.config.data == cfg.data);
  REQUIRE(c.tokenizer->type() == "char");
  REQUIRE(c.optimizer.size() == 2 * c.weights.size());
  auto model = model_from_checkpoint(c);
  for (auto& [name, p] : model->named_parameters()) REQUIRE(bytes_of(p) == bytes_of(c.weights.at(name)));

  // Saving the loaded state again gives byte-identical tensor files.
  AdamW opt(model->named_parameters(), AdamWOptions());
  opt.load_state(c.optimizer, c.state.step, &c.weights);
  save_checkpoint(d / "again", c.config, *c.tokenizer, opt, c.state);
  REQUIRE(read_file(d / "again/model-00000006.safetensors") ==
          read_file(d / "ckpt/model-00000006.safetensors"));
  REQUIRE(read_file(d / "again/optimizer-00000006.safetensors") ==
          read_file(d / "ckpt/optimizer-00000006.safetensors"));

  // A later save replaces the step files and leaves no temporaries.
  c.state.step = 7;
  save_checkpoint(d / "again", c.config, *c.tokenizer, opt, c.state);
  int files = 0;
  for (auto& e : fs::directory_iterator(d / "again")) {
    (void)e;
    ++files;
  }
  REQUIRE(files == 3);
  REQUIRE(file_exists(d / "again/model-00000007.safetensors"));
}

TEST_CASE("Resume is exact: 20 steps == 10 steps + resume to 20 (bit-identical on CPU)", "[train]") {
  const std::string dtype = GENERATE(std::string("fp32"), std::string("bf16"));
  INFO("dtype " << dtype);
  TempDir d;
  TrainConfig cfg = toy_run(d);
  cfg.grad_accum = 2;
  cfg.dtype = dtype;
  std::ostringstream log;
  TrainResult full = train::train(cfg, quiet_run(d / "full", log));
  REQUIRE(full.end_step == 20);
  REQUIRE(full.last_loss < full.first_loss);

  RunOptions first = quiet_run(d / "split", log);
  first.stop_at = 10;
  TrainResult a = train::train(cfg, first);
  REQUIRE(a.end_step == 10);
  REQUIRE(load_checkpoint(d / "split", false).state.step == 10);
  TrainResult b = train::train(cfg, resume_run(d / "split", log));
  REQUIRE(b.start_step == 10);
  REQUIRE(b.end_step == 20);
  REQUIRE(b.last_loss == full.last_loss);
  INFO(log.str());
  REQUIRE(read_file(d / "split/model-00000020.safetensors") ==
          read_file(d / "full/model-00000020.safetensors"));
  REQUIRE(read_file(d / "split/optimizer-00000020.safetensors") ==
          read_file(d / "full/optimizer-00000020.safetensors"));
}

TEST_CASE("Bad checkpoints and bad resumes fail clearly and overwrite nothing", "[train]") {
  TempDir d;
  TrainConfig cfg = toy_run(d);
  cfg.steps = 4;
  std::ostringstream log;
  train::train(cfg, quiet_run(d / "ck", log));
  const std::string model_file = d / "ck/model-00000004.safetensors";
  const std::string json_file = d / "ck/checkpoint.json";
  const std::string model_bytes = read_file(model_file), json_bytes = read_file(json_file);
  auto unchanged = [&] {
    REQUIRE(read_file(model_file) == model_bytes);
    REQUIRE(read_file(json_file) == json_bytes);
  };

  // A fresh run into a directory with a checkpoint needs --overwrite or --resume.
  REQUIRE_THROWS_WITH(train::train(cfg, quiet_run(d / "ck", log)), Catch::Contains("--resume"));
  unchanged();

  // Resuming with another architecture is refused, naming the difference.
  RunOptions res = resume_run(d / "ck", log, {"n_layer", "steps"});
  TrainConfig other = cfg;
  other.n_layer = 3;
  other.steps = 8;
  REQUIRE_THROWS_WITH(train::train(other, res), Catch::Contains("another model config") &&
                                                    Catch::Contains("n_layer"));
  unchanged();
  // Non-architecture flags override the checkpoint's values.
  TrainConfig merged = resume_config(cfg, other, {"steps"}, "x");
  REQUIRE(merged.steps == 8);
  REQUIRE(merged.n_layer == 1);

  // No checkpoint at all.
  REQUIRE_THROWS_WITH(load_checkpoint(d / "nothing", true), Catch::Contains("does not exist"));

  // Corrupt contents (one flipped byte), truncation, a missing file, broken JSON.
  std::string flipped = model_bytes;
  flipped[flipped.size() - 3] ^= 0x40;
  write_text(model_file, flipped);
  REQUIRE_THROWS_WITH(load_checkpoint(d / "ck", false), Catch::Contains("hash"));
  write_text(model_file, model_bytes.substr(0, model_bytes.size() / 2));
  REQUIRE_THROWS_WITH(load_checkpoint(d / "ck", false), Catch::Contains("truncated"));
  fs::remove(model_file);
  REQUIRE_THROWS_WITH(load_checkpoint(d / "ck", false), Catch::Contains("missing"));
  write_text(model_file, model_bytes);
  REQUIRE_NOTHROW(load_checkpoint(d / "ck", true));
  write_text(json_file, json_bytes.substr(0, 40));
  REQUIRE_THROWS_WITH(load_checkpoint(d / "ck", false), Catch::Contains("does not parse"));
  // A resume from the broken checkpoint writes nothing.
  REQUIRE_THROWS_AS(train::train(cfg, res), Error);
  REQUIRE(read_file(model_file) == model_bytes);

  // An edited checkpoint.json (its hash no longer matches); tests/train/test_checkpoint.cpp
  // checks the hash and the shapes in detail.
  auto j = nlohmann::json::parse(json_bytes);
  j["config"]["n_embd"] = 64;
  j["model"]["n_embd"] = 64;
  write_text(json_file, j.dump());
  REQUIRE_THROWS_WITH(load_checkpoint(d / "ck", false), Catch::Contains("edited"));
  write_text(json_file, json_bytes);

  // Bad data files.
  TrainConfig missing = cfg;
  missing.data = d / "no_such.txt";
  REQUIRE_THROWS_WITH(train::train(missing, quiet_run(d / "m", log)), Catch::Contains("does not exist"));
  write_text(d / "empty.txt", "");
  missing.data = d / "empty.txt";
  REQUIRE_THROWS_WITH(train::train(missing, quiet_run(d / "m", log)), Catch::Contains("empty"));
  write_text(d / "short.txt", "too short");
  missing.data = d / "short.txt";
  REQUIRE_THROWS_WITH(train::train(missing, quiet_run(d / "m", log)), Catch::Contains("too short"));
  REQUIRE_FALSE(fs::exists(d / "m"));
}

TEST_CASE("A stop request (Ctrl-C) ends training without touching the checkpoint", "[train]") {
  TempDir d;
  TrainConfig cfg = toy_run(d);
  std::ostringstream log;
  RunOptions first = quiet_run(d / "ck", log);
  first.stop_at = 3;
  train::train(cfg, first);
  const std::string json_bytes = read_file(d / "ck/checkpoint.json");
  RunOptions res = resume_run(d / "ck", log);
  request_stop();
  TrainResult r = train::train(cfg, res);
  clear_stop();
  REQUIRE(r.interrupted);
  REQUIRE(r.end_step == 3);
  REQUIRE(read_file(d / "ck/checkpoint.json") == json_bytes);
  REQUIRE(log.str().find("is intact") != std::string::npos);
}

TEST_CASE("A run holds its directory: a second run into it fails at once", "[train]") {
  TempDir d;
  TrainConfig cfg = toy_run(d);
  cfg.steps = 2;
  std::ostringstream log;
  {
    DirectoryLock other(d / "ck", "another run");  // as another process would hold it
    REQUIRE_THROWS_WITH(train::train(cfg, quiet_run(d / "ck", log)),
                        Catch::Contains("in use by another flashgrad process"));
  }
  train::train(cfg, quiet_run(d / "ck", log));
  DirectoryLock other(d / "ck", "another run");
  cfg.steps = 4;
  REQUIRE_THROWS_WITH(train::train(cfg, resume_run(d / "ck", log, {"steps"})),
                      Catch::Contains("in use by another flashgrad process"));
  REQUIRE(load_checkpoint(d / "ck", false).state.step == 2);
}

TEST_CASE("Resuming with more steps trains on at min_lr; the schedule keeps its length", "[train]") {
  TempDir d;
  TrainConfig cfg = toy_run(d);
  cfg.log_interval = 1;
  std::ostringstream log;
  train::train(cfg, quiet_run(d / "ck", log));
  REQUIRE(load_checkpoint(d / "ck", false).config.lr_decay_steps == 20);
  cfg.steps = 30;
  std::ostringstream more;
  train::train(cfg, resume_run(d / "ck", more, {"steps"}));
  INFO(more.str());
  REQUIRE(more.str().find("note: the learning rate decays over the first 20 steps") != std::string::npos);
  REQUIRE(more.str().find("step 21/30 | loss") != std::string::npos);
  // Every resumed step at min_lr (3e-4 in the toy config), none back up the cosine.
  size_t lines = 0;
  for (size_t at = more.str().find("/30 | loss"); at != std::string::npos;
       at = more.str().find("/30 | loss", at + 1)) {
    REQUIRE(more.str().compare(more.str().find("| lr ", at), 13, "| lr 3.00e-04") == 0);
    ++lines;
  }
  REQUIRE(lines == 10);
  REQUIRE(load_checkpoint(d / "ck", false).config.lr_decay_steps == 20);
}

TEST_CASE("Ctrl-C during the final sample stops it promptly; the run counts as interrupted", "[train]") {
  TempDir d;
  TrainConfig cfg = toy_run(d);
  cfg.steps = 2;
  cfg.sample_tokens = 100000;  // minutes of sampling if nothing stopped it
  StopAfter stopper("--- sample", 20);
  std::ostream out(&stopper);
  clear_stop();
  TrainResult r = train::train(cfg, quiet_run(d / "ck", out));
  clear_stop();
  INFO(stopper.text);
  REQUIRE(r.interrupted);
  // Streamed as drawn: the stop came after about 20 characters of the sample.
  REQUIRE(r.sample.size() < 200);
  REQUIRE(stopper.text.find("--- sample stopped by Ctrl-C after") != std::string::npos);
  REQUIRE(stopper.text.find("the checkpoint of step 2 in") != std::string::npos);
  REQUIRE(load_checkpoint(d / "ck", true).state.step == 2);
}

// ---------------------------------------------------------------------------------------------
// sampling

TEST_CASE("Sampling: greedy, top-k, temperature, reproducible generate()", "[train]") {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, -1.0f};
  REQUIRE(sample_from_logits(logits, 0.0, 0, 0.99) == 1);  // greedy
  for (double u : {0.0, 0.3, 0.7, 0.999}) REQUIRE(sample_from_logits(logits, 1.0, 1, u) == 1);
  std::set<int32_t> seen;
  for (int i = 0; i < 100; ++i) seen.insert(sample_from_logits(logits, 1.0, 2, (i + 0.5) / 100));
  REQUIRE(seen == std::set<int32_t>{1, 2});  // top-2 only
  // p = softmax(logits) = 0.089, 0.657, 0.242, 0.012: the CDF is 0.089, 0.746, 0.988, 1.
  REQUIRE(sample_from_logits(logits, 1.0, 0, 0.05) == 0);
  REQUIRE(sample_from_logits(logits, 1.0, 0, 0.70) == 1);
  REQUIRE(sample_from_logits(logits, 1.0, 0, 0.95) == 2);
  REQUIRE(sample_from_logits(logits, 1.0, 0, 0.9999) == 3);
  // A low temperature sharpens towards the argmax.
  REQUIRE(sample_from_logits(logits, 0.01, 0, 0.999) == 1);

  nn::GPT m(nn::GPTConfig().vocab_size(9).block_size(6).n_layer(1).n_head(2).n_embd(16));
  SampleOptions so;
  so.max_new_tokens = 10;  // longer than the context: the window slides
  std::vector<int32_t> streamed;
  auto a = generate(m, {1, 2}, so, [&](int32_t t) { streamed.push_back(t); });
  auto b = generate(m, {1, 2}, so);
  REQUIRE(a.size() == 10);
  REQUIRE(a == b);
  REQUIRE(a == streamed);
  for (int32_t t : a) REQUIRE((t >= 0 && t < 9));
  REQUIRE(m.is_training());  // mode restored
  so.seed = 43;
  so.max_new_tokens = 30;
  SampleOptions seed42 = so;
  seed42.seed = 42;
  REQUIRE(generate(m, {1}, so) != generate(m, {1}, seed42));
  REQUIRE_THROWS_AS(generate(m, {}, so), Error);
}

// ---------------------------------------------------------------------------------------------
// CUDA

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("CUDA AdamW is bit-identical to CPU AdamW (f32 and bf16 with master)", "[train][cuda]") {
  for (int64_t n : {1, 1000, 70001}) {
    for (DType dt : {DType::f32, DType::bf16}) {
      Generator g(uint64_t(n) + 3);
      Tensor p0 = randn({n}, TensorOptions(DType::f32), &g);
      // A copy: for f32, to_dtype returns p0 itself, which the in-place update would change.
      Tensor cpu_p = ops::clone(ops::to_dtype(p0, dt)), gpu_p = ops::to_device(cpu_p, Device::cuda());
      cpu_p.set_requires_grad(true);
      gpu_p.set_requires_grad(true);
      AdamW oc({{"p", cpu_p}}, AdamWOptions().lr(3e-3).weight_decay(0.1));
      AdamW og({{"p", gpu_p}}, AdamWOptions().lr(3e-3).weight_decay(0.1));
      for (int step = 0; step < 3; ++step) {
        Tensor grad = ops::to_dtype(randn({n}, TensorOptions(DType::f32), &g), dt);
        cpu_p.set_grad(grad);
        gpu_p.set_grad(ops::to_device(grad, Device::cuda()));
        oc.step(0.7);
        og.step(0.7);
      }
      INFO("n=" << n << " dtype=" << dtype_name(dt));
      REQUIRE(bytes_of(gpu_p) == bytes_of(cpu_p));
      REQUIRE(bytes_of(og.states()[0].exp_avg_sq) == bytes_of(oc.states()[0].exp_avg_sq));
      if (dt == DType::bf16) REQUIRE(bytes_of(og.states()[0].master) == bytes_of(oc.states()[0].master));
      // And the update really changed something.
      REQUIRE(bytes_of(cpu_p) != bytes_of(ops::to_dtype(p0, dt)));
    }
  }
}

TEST_CASE("Training on CUDA: loss falls, in fp32 and bf16", "[train][cuda]") {
  for (const char* dtype : {"fp32", "bf16"}) {
    TempDir d;
    TrainConfig cfg = toy_run(d);
    cfg.device = "cuda";
    cfg.dtype = dtype;
    cfg.n_embd = 64;  // head dim 32 for the CUDA attention kernels
    cfg.steps = 40;
    std::ostringstream log;
    TrainResult r = train::train(cfg, quiet_run(d / "ck", log));
    INFO(dtype << "\n" << log.str());
    REQUIRE(r.end_step == 40);
    REQUIRE(r.last_loss < r.first_loss - 0.5);
    REQUIRE(std::isfinite(r.best_val_loss));
    Checkpoint c = load_checkpoint(d / "ck", true);
    REQUIRE(c.weights.at("wte.weight").dtype() == DType::f32);
  }
}
#endif
