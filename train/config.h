// Every setting of a training run (the architecture, the data, the optimisation, evaluation,
// checkpoints and the system), its presets, and its JSON form stored in checkpoints.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "nn/gpt.h"

namespace fg::train {

struct TrainConfig {
  std::string preset = "tiny";
  // model
  int64_t n_layer = 2, n_head = 4, n_kv_head = 0, n_embd = 128, block_size = 64;
  double dropout = 0.0;
  bool bias = true;
  std::string attn = "flash";  // flash | naive
  // data
  std::string data;            // empty: the default corpus (data/fortunes.txt)
  std::string tokenizer = "char";  // char | byte
  double val_fraction = 0.1;
  // optimisation
  int64_t batch_size = 16, grad_accum = 1, steps = 800, warmup = 30;
  // The length of the warm-up + cosine schedule; 0 = steps. A fresh run sets it to its steps
  // and a resumed run keeps the checkpoint's, so a larger --steps on --resume trains on at
  // min_lr instead of stretching the cosine (which would make the learning rate jump back up).
  int64_t lr_decay_steps = 0;
  double lr = 3e-3, min_lr = 3e-4, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  double grad_clip = 1.0;      // 0 disables clipping
  // evaluation, logging, checkpoints
  int64_t eval_interval = 200, eval_batches = 10, log_interval = 20;
  int64_t sample_tokens = 200; // printed after training; 0 disables
  // system
  std::string device = "auto"; // auto | cpu | cuda
  std::string dtype = "fp32";  // fp32 | bf16
  uint64_t seed = 1337;

  // The architecture part, for a vocabulary of vocab_size.
  nn::GPTConfig model_config(int64_t vocab_size) const;
  // The schedule's length: lr_decay_steps, or steps when that is 0.
  int64_t schedule_steps() const { return lr_decay_steps > 0 ? lr_decay_steps : steps; }
  // Throws naming the first bad setting, its value and the values accepted (setting_ranges()).
  void validate() const;
};

// The values a numeric setting accepts: what TrainConfig::validate() checks and what the
// command line checks while parsing its flags, so that both refuse a value with the same
// words ("--steps must be a whole number from 1 to 1000000000, got 0"). Whole numbers are
// int64 (or uint64 for `unsigned_whole`, which has no further bounds); real numbers must be
// finite. The bounds keep every size product inside 64 bits and every count humanly
// reachable; whether a run fits in memory is checked separately, against the machine.
struct NumberRange {
  enum class Kind { whole, unsigned_whole, real };
  std::string flag;  // "--steps": names the setting in messages
  Kind kind = Kind::whole;
  double lo = 0, hi = 0;  // inclusive for whole numbers; for real ones see the flags below
  bool lo_open = false, hi_open = false;

  static NumberRange whole(std::string flag, int64_t lo, int64_t hi);
  static NumberRange unsigned_whole(std::string flag);
  static NumberRange real(std::string flag, double lo, double hi, bool lo_open, bool hi_open);

  bool accepts(double v) const;
  // "a whole number from 1 to 1000000000", "a finite number > 0", "a number in [0, 1)"
  std::string describe() const;
  // "<flag> must be <describe()>, got <value>"
  std::string refusal(const std::string& value) const;
  // Checks `text` as typed on a command line (strict decimal for whole numbers, no sign for
  // unsigned ones, finite for real ones). Returns the refusal, or "" and sets `canonical` to
  // the value in plain decimal (so that "010" is ten, never octal eight).
  std::string check_text(const std::string& text, std::string* canonical = nullptr) const;
};

// The range of the config key `key` ("steps", "lr", ...), or null when it has none (strings,
// flags). Every numeric TrainConfig field has one.
const NumberRange* setting_range(const std::string& key);

// "tiny" (the default: a couple of minutes on two CPU cores) or "small" (nanoGPT's
// Shakespeare-char model). Throws for other names, listing the presets.
TrainConfig preset(const std::string& name);
std::vector<std::string> preset_names();

nlohmann::json to_json(const TrainConfig& c);
// Missing keys keep c's values; wrong types throw fg::Error.
void update_from_json(TrainConfig& c, const nlohmann::json& j);

// The architecture fields of TrainConfig (checked against a checkpoint on resume).
std::vector<std::string> model_config_keys();
// The fields a preset sets (naming a preset explicitly names all of these).
std::vector<std::string> preset_keys();

}  // namespace fg::train
