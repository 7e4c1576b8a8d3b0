// The training loop behind `flashgrad train`: data, model, AdamW with warm-up + cosine LR,
// gradient clipping and accumulation, periodic evaluation and checkpoints, exact resume,
// Ctrl-C handling, a progress line and a final summary with a sample.
#pragma once
#include <cstdint>
#include <cmath>
#include <iosfwd>
#include <set>
#include <string>

#include "nn/gpt.h"
#include "train/config.h"

namespace fg::train {

struct RunOptions {
  std::string out_dir = "out";
  bool resume = false;     // continue the checkpoint in out_dir
  bool overwrite = false;  // allow a fresh run to replace a checkpoint in out_dir
  int64_t stop_at = 0;     // stop (with a checkpoint) after this step, as if paused; 0 = never
  // The config keys given explicitly (on the command line). On resume they override the
  // checkpoint's values; for the architecture keys (model_config_keys()) a different value is
  // an error, since the weights would not fit.
  std::set<std::string> explicit_keys;
  std::ostream* out = nullptr;  // progress and summary; null = std::cout
  bool live = false;            // rewrite the progress line in place (stdout is a terminal)
};

struct TrainResult {
  int64_t start_step = 0, end_step = 0;
  double first_loss = NAN, last_loss = NAN;  // training loss of this run's first / last step
  double best_val_loss = NAN;
  double seconds = 0;
  bool interrupted = false;  // stopped by Ctrl-C (or request_stop())
  std::string sample;
};

// Runs training as configured; throws fg::Error (before writing anything) for bad settings,
// data or checkpoints. The checkpoint in run.out_dir is written at every evaluation, when
// stopping at run.stop_at, and at the end.
TrainResult train(TrainConfig config, const RunOptions& run);

// The mean loss over `batches` random batches of `tokens` (eval mode, no graph), drawn from a
// generator seeded with `seed`: the same batches at every evaluation. The model's mode and
// the default generator's state are restored afterwards.
double evaluate(nn::GPT& model, const std::vector<int32_t>& tokens, int64_t batch_size,
                int64_t batches, uint64_t seed);

// Resolves a resumed run's config: the checkpoint's, with the explicitly given keys of
// `requested` on top. Throws when an architecture key differs.
TrainConfig resume_config(const TrainConfig& checkpoint, const TrainConfig& requested,
                          const std::set<std::string>& explicit_keys, const std::string& dir);

// Ctrl-C: while a SigintGuard lives, the first SIGINT only asks train() to stop after the
// current step (without writing anything half-done); a second one exits at once (130).
class SigintGuard {
 public:
  SigintGuard();
  ~SigintGuard();
  SigintGuard(const SigintGuard&) = delete;
  SigintGuard& operator=(const SigintGuard&) = delete;
};
void request_stop();
bool stop_requested();
void clear_stop();

}  // namespace fg::train
