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
  // Throws naming the first bad setting.
  void validate() const;
};

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
