// Checkpoint integrity: checkpoint.json is protected by a hash, and every config field that
// implies a tensor shape is checked against the weights, so an edited or corrupt checkpoint is
// refused instead of loading into a different model.
#include "support/test_util.h"
#include "support/train_fixtures.h"

#include <nlohmann/json.hpp>

#include "nn/gpt.h"
#include "train/checkpoint.h"
#include "train/fileio.h"

using namespace fg;
using namespace fg::train;
using fg::test::TempDir;
using json = nlohmann::json;

namespace {

// The integrity rule as documented in train/checkpoint.cpp: FNV-1a of the compact dump of
// every field but "integrity".
void rehash(json& j) {
  json body = j;
  body.erase("integrity");
  j["integrity"]["fnv1a64"] = fnv1a64_hex(body.dump());
}

struct Trained {
  TempDir d;
  std::string json_file;
  json j;
  Trained(int64_t n_kv_head = 0) {
    test::write_text(d / "data.txt", test::toy_corpus());
    TrainConfig cfg = test::toy_config(d / "data.txt");
    cfg.steps = 2;
    cfg.n_head = 4;
    cfg.n_kv_head = n_kv_head;
    std::ostringstream log;
    train::train(cfg, test::quiet_run(d / "ck", log));
    json_file = d / "ck/checkpoint.json";
    j = json::parse(read_file(json_file));
  }
  void write(const json& x) { test::write_text(json_file, x.dump(2)); }
};

}  // namespace

TEST_CASE("checkpoint.json carries an integrity hash that load checks", "[checkpoint]") {
  Trained t;
  REQUIRE(t.j.at("version") == 2);
  REQUIRE(t.j.at("integrity").at("fnv1a64").is_string());
  REQUIRE_NOTHROW(load_checkpoint(t.d / "ck", true));

  // n_head edited in both sections: no tensor shape changes (MHA), only the hash can tell.
  json e = t.j;
  e["config"]["n_head"] = 2;
  e["model"]["n_head"] = 2;
  t.write(e);
  REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", false), Catch::Contains("edited"));

  // One code point of the tokenizer changed.
  e = t.j;
  std::string dump = e["tokenizer"].dump();
  const size_t at = dump.find('a');
  REQUIRE(at != std::string::npos);
  dump[at] = 'b';
  e["tokenizer"] = json::parse(dump);
  REQUIRE(e != t.j);
  t.write(e);
  REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", false), Catch::Contains("edited"));

  // The optimizer settings and the RNG state are covered too.
  e = t.j;
  e["rng"]["data_offset"] = 12345;
  t.write(e);
  REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", false), Catch::Contains("edited"));

  // Whitespace alone changes nothing: the hash is over the parsed content.
  test::write_text(t.json_file, t.j.dump());
  REQUIRE_NOTHROW(load_checkpoint(t.d / "ck", true));

  // A version 1 file (written before the hash existed) still loads.
  e = t.j;
  e.erase("integrity");
  e["version"] = 1;
  t.write(e);
  REQUIRE_NOTHROW(load_checkpoint(t.d / "ck", true));
}

TEST_CASE("every config field that implies a shape is checked against the weights", "[checkpoint]") {
  Trained t(/*n_kv_head=*/2);
  struct Edit {
    const char* key;
    int64_t value;
    const char* says;
  } edits[] = {{"n_embd", 64, "implies"},     {"n_kv_head", 4, "implies"},
               {"n_layer", 2, "implies"},     {"block_size", 32, "implies"},
               {"n_layer", 1000, "n_layer 1000"}};
  for (const Edit& ed : edits) {
    json e = t.j;
    e["config"][ed.key] = ed.value;
    e["model"][ed.key] = ed.value;
    rehash(e);  // a consistent edit: past the hash, the shapes must catch it
    t.write(e);
    INFO(ed.key << " = " << ed.value);
    REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", false), Catch::Contains(ed.says));
  }
  // Config and model sections that disagree.
  json e = t.j;
  e["model"]["dropout"] = 0.5;
  rehash(e);
  t.write(e);
  REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", false), Catch::Contains("model section"));
}

TEST_CASE("a number in checkpoint.json must fit the field that reads it", "[checkpoint]") {
  // Found by the fuzz target: nlohmann's get<uint64_t>() of 7.57e19 is undefined behaviour, and
  // 2.5 read as a step would silently become 2. Each edit is rehashed, so only the strict
  // number reads (train/json_read.h) can refuse it.
  Trained t;
  struct Edit {
    std::vector<std::string> path;
    json value;
    const char* says;
  } edits[] = {
      {{"rng", "data_offset"}, 7.57451e19, "'data_offset' must be a whole number"},
      {{"rng", "dropout_seed"}, -1, "'dropout_seed' must be a whole number"},
      {{"step"}, 2.5, "'step' must be a whole number"},
      {{"version"}, 4294967298ull, "'version' must be a whole number"},
      {{"best_val_loss"}, "low", "'best_val_loss' must be a number"},
      {{"config", "n_layer"}, 1e30, "'n_layer' must be a whole number"},
      {{"config", "seed"}, 1.5, "'seed' must be a whole number"},
      {{"tokenizer", "vocab_size"}, 3.0, "vocab_size must be a whole number"},
      {{"files", "weights", "bytes"}, -5, "'bytes' must be a whole number"},
  };
  for (const Edit& ed : edits) {
    json e = t.j;
    json* at = &e;
    for (const std::string& k : ed.path) at = &(*at)[k];
    *at = ed.value;
    rehash(e);
    t.write(e);
    INFO(ed.path.back() << " = " << ed.value.dump());
    REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", true), Catch::Contains(ed.says));
  }
  // A code point outside uint32 in the tokenizer.
  json e = t.j;
  e["tokenizer"]["code_points"][0] = 1ull << 40;
  rehash(e);
  t.write(e);
  REQUIRE_THROWS_WITH(load_checkpoint(t.d / "ck", false),
                      Catch::Contains("code_points must be a whole number from 0 to 4294967295"));
}

TEST_CASE("gpt_parameter_shapes lists exactly GPT(config).named_parameters()", "[checkpoint]") {
  for (bool bias : {true, false})
    for (int64_t kv : {0, 1, 2}) {
      nn::GPTConfig c = nn::GPTConfig().vocab_size(11).block_size(9).n_layer(2).n_head(4)
                            .n_kv_head(kv).n_embd(16).bias(bias);
      nn::GPT m(c);
      auto params = m.named_parameters();
      auto shapes = nn::gpt_parameter_shapes(c);
      REQUIRE(params.size() == shapes.size());
      for (size_t i = 0; i < shapes.size(); ++i) {
        CHECK(params[i].first == shapes[i].first);
        CHECK(params[i].second.shape() == shapes[i].second);
      }
    }
}
