// Checkpoints: a directory holding
//   checkpoint.json                the config, the tokenizer, the step, the RNG offsets, the
//                                  optimizer's hyperparameters, and the names, sizes and
//                                  FNV-1a hashes of the two files below
//   model-<step>.safetensors       the fp32 weights (the master copies under bf16 training)
//   optimizer-<step>.safetensors   AdamW's moments, "exp_avg.<param>" / "exp_avg_sq.<param>"
//
// Saving writes both safetensors files atomically under new step-numbered names, then
// checkpoint.json atomically (the commit point), then removes the previous step's files. A
// crash or Ctrl-C at any moment therefore leaves a checkpoint.json that names complete files.
// Loading checks the format, the hashes and the shapes before returning anything, and throws
// fg::Error saying what is wrong (missing, truncated, corrupt, or from another config).
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "nn/gpt.h"
#include "train/config.h"
#include "train/optim.h"
#include "train/tokenizer.h"

namespace fg::train {

// Where a run stands between steps: everything besides weights and moments that a resumed run
// needs to continue exactly as an uninterrupted one.
struct TrainState {
  int64_t step = 0;                          // optimizer steps done
  uint64_t data_seed = 0, data_offset = 0;   // the batch generator
  uint64_t dropout_seed = 0, dropout_offset = 0;  // the default generator (dropout masks)
  double best_val_loss = NAN;                // NaN until the first evaluation
  int64_t best_val_step = -1;
  double elapsed_seconds = 0;                // training time over all runs
};

struct Checkpoint {
  std::string dir;
  TrainConfig config;
  nn::GPTConfig model;
  std::unique_ptr<Tokenizer> tokenizer;
  TrainState state;
  std::map<std::string, Tensor> weights;    // fp32, CPU
  std::map<std::string, Tensor> optimizer;  // moments, CPU (only when asked for)
};

bool has_checkpoint(const std::string& dir);
void save_checkpoint(const std::string& dir, const TrainConfig& config, const Tokenizer& tokenizer,
                     const AdamW& optimizer, const TrainState& state);
Checkpoint load_checkpoint(const std::string& dir, bool with_optimizer);

// The same checks on a checkpoint held in memory: `json_text` is checkpoint.json, and
// read(name, what) returns the bytes of the file checkpoint.json names (`what` is "weights"
// or "optimizer", for messages) or throws. `dir` only names the checkpoint in errors.
// load_checkpoint is this with a reader of the directory; the fuzz target (tests/fuzz/)
// feeds it generated inputs.
using CheckpointFileReader = std::function<std::string(const std::string& name, const char* what)>;
Checkpoint parse_checkpoint(const std::string& dir, const std::string& json_text,
                            bool with_optimizer, const CheckpointFileReader& read);

// A model built from a checkpoint's config with its weights loaded (fp32, on the CPU).
std::shared_ptr<nn::GPT> model_from_checkpoint(const Checkpoint& ckpt);

}  // namespace fg::train
