// Checkpoint save (atomic, step-numbered files committed by checkpoint.json) and validating load.
#include "train/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "train/fileio.h"
#include "train/json_read.h"
#include "train/safetensors.h"

namespace fg::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "flashgrad-checkpoint";
// Version 2 added "integrity": the FNV-1a hash of the rest of checkpoint.json. Version 1 files
// (no hash) still load.
constexpr int kVersion = 2;

// The hash that protects checkpoint.json against edits and corruption: FNV-1a over the compact
// dump of every field but "integrity" itself (nlohmann::json keeps object keys sorted, so the
// dump is canonical). It covers the config, the tokenizer, the optimizer settings, the RNG
// state and the file table, which in turn carries the hashes of the weight files.
std::string json_integrity(json j) {
  j.erase("integrity");
  return fnv1a64_hex(j.dump());
}

// Every weight the config implies, with its shape, and nothing else.
void check_weights_match_config(const std::string& dir, const nn::GPTConfig& m,
                                const std::map<std::string, Tensor>& weights) {
  // A config with more layers than there are tensors cannot match; saying so before listing
  // its shapes keeps a corrupt n_layer from costing time.
  FG_CHECK(m.n_layer_ <= int64_t(weights.size()), "checkpoint '", dir,
           "' is inconsistent: its config has n_layer ", m.n_layer_, " but the weights file holds ",
           weights.size(), " tensors");
  const auto expected = nn::gpt_parameter_shapes(m);
  for (const auto& [name, shape] : expected) {
    auto it = weights.find(name);
    FG_CHECK(it != weights.end(), "checkpoint '", dir, "' is inconsistent: its config (n_layer ",
             m.n_layer_, ", n_head ", m.n_head_, ", n_kv_head ", m.kv_heads(), ", n_embd ",
             m.n_embd_, ", vocab ", m.vocab_size_, ", context ", m.block_size_, ", bias ",
             m.bias_ ? "on" : "off", ") implies a weight '", name,
             "' that the weights file does not hold");
    FG_CHECK(it->second.shape() == shape, "checkpoint '", dir, "' is inconsistent: its config "
             "implies '", name, "' of shape ", shape_str(shape), " but the weights file holds ",
             shape_str(it->second.shape()));
  }
  FG_CHECK(expected.size() == weights.size(), "checkpoint '", dir, "' is inconsistent: the "
           "weights file holds ", weights.size(), " tensors, its config implies ", expected.size());
}

std::string json_path(const std::string& dir) { return (fs::path(dir) / "checkpoint.json").string(); }

std::string step_file(const char* kind, int64_t step) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%08lld.safetensors", kind, static_cast<long long>(step));
  return buf;
}

// Whether `name` is a step file as step_file() writes it: "model-" or "optimizer-", at least 8
// digits, ".safetensors". Saving removes only these, never another file a user keeps beside.
bool is_step_file(const std::string& name) {
  for (const char* kind : {"model-", "optimizer-"}) {
    const std::string prefix = kind, suffix = ".safetensors";
    if (name.rfind(prefix, 0) != 0 || name.size() < prefix.size() + 8 + suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string digits =
        name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.find_first_not_of("0123456789") == std::string::npos) return true;
  }
  return false;
}

json model_json(const nn::GPTConfig& m) {
  return {{"vocab_size", m.vocab_size_}, {"block_size", m.block_size_}, {"n_layer", m.n_layer_},
          {"n_head", m.n_head_},         {"n_kv_head", m.n_kv_head_},   {"n_embd", m.n_embd_},
          {"dropout", m.dropout_},       {"bias", m.bias_},
          {"attn", attention_impl_name(m.attn_)}, {"seed", m.seed_}};
}

// Reads a file named in checkpoint.json and checks its size and hash.
SafetensorsData read_checked(const std::string& dir, const json& entry, const char* what,
                             int64_t step, const CheckpointFileReader& read) {
  std::string name = entry.at("name").get<std::string>();
  FG_CHECK(name.find('/') == std::string::npos && !name.empty() && name != "." && name != "..",
           "checkpoint '", dir, "' is corrupt: bad ", what, " file name '", name, "'");
  std::string bytes = read(name, what);
  uint64_t want = json_number<uint64_t>(entry.at("bytes"), str("checkpoint '", dir, "' is corrupt: the ", what, " file's 'bytes'"));
  FG_CHECK(bytes.size() == want, "checkpoint '", dir, "' is corrupt: '", name, "' has ", bytes.size(),
           " bytes but checkpoint.json says ", want, " (truncated?)");
  FG_CHECK(fnv1a64_hex(bytes) == entry.at("fnv1a64").get<std::string>(), "checkpoint '", dir,
           "' is corrupt: the contents of '", name, "' do not match the hash in checkpoint.json");
  SafetensorsData d = safetensors_parse(bytes, (fs::path(dir) / name).string());
  auto it = d.metadata.find("flashgrad_step");
  FG_CHECK(it != d.metadata.end() && it->second == std::to_string(step), "checkpoint '", dir,
           "' is inconsistent: '", name, "' is not from step ", step);
  return d;
}

}  // namespace

bool has_checkpoint(const std::string& dir) { return file_exists(json_path(dir)); }

void save_checkpoint(const std::string& dir, const TrainConfig& config, const Tokenizer& tokenizer,
                     const AdamW& optimizer, const TrainState& st) {
  const Metadata meta{{"format", "pt"}, {"flashgrad_step", std::to_string(st.step)}};
  const std::string model_name = step_file("model", st.step);
  const std::string opt_name = step_file("optimizer", st.step);
  std::string model_bytes = safetensors_serialize(optimizer.fp32_weights(), meta);
  std::string opt_bytes = safetensors_serialize(optimizer.state_tensors(), meta);
  write_file_atomic((fs::path(dir) / model_name).string(), model_bytes);
  write_file_atomic((fs::path(dir) / opt_name).string(), opt_bytes);

  const AdamWOptions& o = optimizer.options();
  json j = {
      {"format", kFormat},
      {"version", kVersion},
      {"step", st.step},
      {"config", to_json(config)},
      {"model", model_json(config.model_config(tokenizer.vocab_size()))},
      {"tokenizer", tokenizer.to_json()},
      {"optimizer",
       {{"type", "adamw"}, {"step", optimizer.step_count()}, {"lr", o.lr_}, {"beta1", o.beta1_},
        {"beta2", o.beta2_}, {"eps", o.eps_}, {"weight_decay", o.weight_decay_}}},
      {"rng",
       {{"data_seed", st.data_seed}, {"data_offset", st.data_offset},
        {"dropout_seed", st.dropout_seed}, {"dropout_offset", st.dropout_offset}}},
      {"best_val_loss", std::isnan(st.best_val_loss) ? json(nullptr) : json(st.best_val_loss)},
      {"best_val_step", st.best_val_step},
      {"elapsed_seconds", st.elapsed_seconds},
      {"files",
       {{"weights", {{"name", model_name}, {"bytes", model_bytes.size()}, {"fnv1a64", fnv1a64_hex(model_bytes)}}},
        {"optimizer", {{"name", opt_name}, {"bytes", opt_bytes.size()}, {"fnv1a64", fnv1a64_hex(opt_bytes)}}}}}};
  j["integrity"] = {{"fnv1a64", json_integrity(j)}};
  write_file_atomic(json_path(dir), j.dump(2) + "\n");  // the commit point

  // The previous steps' files are no longer referenced. (A fresh run refuses a directory
  // holding another run's files unless told to replace them: see train/trainer.cpp.)
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (is_step_file(n) && n != model_name && n != opt_name) fs::remove(e.path(), ec);
  }
}

Checkpoint load_checkpoint(const std::string& dir, bool with_optimizer) {
  std::error_code ec;
  FG_CHECK(fs::is_directory(dir, ec), "checkpoint directory '", dir, "' does not exist");
  FG_CHECK(has_checkpoint(dir), "'", dir, "' holds no checkpoint (no checkpoint.json); train one "
           "with `flashgrad train --out ", dir, "`");
  const std::string text = read_file(json_path(dir), "checkpoint.json");
  return parse_checkpoint(dir, text, with_optimizer, [&](const std::string& name, const char* what) {
    const std::string path = (fs::path(dir) / name).string();
    FG_CHECK(file_exists(path), "checkpoint '", dir, "' is incomplete: its ", what, " file '",
             name, "' is missing");
    return read_file(path, std::string("checkpoint ") + what + " file");
  });
}

Checkpoint parse_checkpoint(const std::string& dir, const std::string& text, bool with_optimizer,
                            const CheckpointFileReader& read) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(str("checkpoint '", dir, "' is corrupt: checkpoint.json does not parse (", e.what(), ")"));
  }
  Checkpoint c;
  c.dir = dir;
  auto field = [&](const char* name) {
    return str("checkpoint '", dir, "' is corrupt: checkpoint.json's '", name, "'");
  };
  try {
    FG_CHECK(j.is_object() && j.value("format", "") == kFormat, "'", json_path(dir),
             "' is not a flashgrad checkpoint");
    const int version = json_number<int>(j.at("version"), field("version"));
    FG_CHECK(version == 1 || version == kVersion, "checkpoint '", dir, "' has format version ",
             version, "; this flashgrad reads versions 1 and ", kVersion);
    if (version >= 2)
      FG_CHECK(j.at("integrity").at("fnv1a64").get<std::string>() == json_integrity(j),
               "checkpoint '", dir, "' is corrupt or was edited: checkpoint.json does not match "
               "its integrity hash; restore the file (a checkpoint's settings cannot be changed "
               "by editing it: change them with flags when resuming, or train anew)");
    update_from_json(c.config, j.at("config"));
    c.config.validate();
    c.tokenizer = Tokenizer::from_json(j.at("tokenizer"));
    FG_CHECK(c.tokenizer->type() == c.config.tokenizer, "checkpoint '", dir,
             "' is inconsistent: config says tokenizer ", c.config.tokenizer, " but holds a ",
             c.tokenizer->type(), " tokenizer");
    c.model = c.config.model_config(c.tokenizer->vocab_size());
    FG_CHECK(j.at("model") == model_json(c.model), "checkpoint '", dir,
             "' is inconsistent: its model section does not match its config");
    TrainState& s = c.state;
    s.step = json_number<int64_t>(j.at("step"), field("step"));
    FG_CHECK(s.step >= 0, "checkpoint '", dir, "' is corrupt: negative step");
    const json& r = j.at("rng");
    s.data_seed = json_number<uint64_t>(r.at("data_seed"), field("data_seed"));
    s.data_offset = json_number<uint64_t>(r.at("data_offset"), field("data_offset"));
    s.dropout_seed = json_number<uint64_t>(r.at("dropout_seed"), field("dropout_seed"));
    s.dropout_offset = json_number<uint64_t>(r.at("dropout_offset"), field("dropout_offset"));
    s.best_val_loss = j.at("best_val_loss").is_null() ? NAN : json_number<double>(j.at("best_val_loss"), field("best_val_loss"));
    s.best_val_step = json_number<int64_t>(j.at("best_val_step"), field("best_val_step"));
    s.elapsed_seconds = j.contains("elapsed_seconds")
                            ? json_number<double>(j.at("elapsed_seconds"), field("elapsed_seconds"))
                            : 0.0;
    FG_CHECK(json_number<int64_t>(j.at("optimizer").at("step"), field("optimizer.step")) == s.step, "checkpoint '", dir,
             "' is inconsistent: optimizer step differs from the training step");

    c.weights = read_checked(dir, j.at("files").at("weights"), "weights", s.step, read).tensors;
    if (with_optimizer)
      c.optimizer = read_checked(dir, j.at("files").at("optimizer"), "optimizer", s.step, read).tensors;
  } catch (const json::exception& e) {
    throw Error(str("checkpoint '", dir, "' is corrupt: checkpoint.json lacks or mistypes a field (",
                    e.what(), ")"));
  }
  for (auto& [name, t] : c.weights)
    FG_CHECK(t.dtype() == DType::f32, "checkpoint '", dir, "' is corrupt: weight '", name,
             "' is ", dtype_name(t.dtype()), ", expected F32");
  check_weights_match_config(dir, c.model, c.weights);
  if (with_optimizer) {
    // Two fp32 moments per weight, of the weight's shape.
    for (const auto& [name, w] : c.weights)
      for (const char* moment : {"exp_avg.", "exp_avg_sq."}) {
        auto it = c.optimizer.find(moment + name);
        FG_CHECK(it != c.optimizer.end() && it->second.shape() == w.shape() &&
                     it->second.dtype() == DType::f32,
                 "checkpoint '", dir, "' is inconsistent: the optimizer file lacks an F32 '",
                 moment, name, "' of shape ", shape_str(w.shape()));
      }
    FG_CHECK(c.optimizer.size() == 2 * c.weights.size(), "checkpoint '", dir,
             "' is inconsistent: the optimizer file holds ", c.optimizer.size(),
             " tensors, expected two moments for each of ", c.weights.size(), " weights");
  }
  return c;
}

std::shared_ptr<nn::GPT> model_from_checkpoint(const Checkpoint& ckpt) {
  auto model = std::make_shared<nn::GPT>(ckpt.model);
  try {
    model->load_state_dict(ckpt.weights);
  } catch (const Error& e) {
    throw Error(str("checkpoint '", ckpt.dir, "' does not match its own config: ", e.what()));
  }
  return model;
}

}  // namespace fg::train
