// The training loop behind `flashgrad train`: data, model, AdamW with warm-up + cosine LR,
// gradient clipping and accumulation, periodic evaluation and checkpoints, exact resume,
// Ctrl-C handling, a progress line and a final summary with a sample printed as it is drawn.
#pragma once
#include <cstdint>
#include <cmath>
#include <iosfwd>
#include <set>
#include <string>

#include "nn/gpt.h"
#include "train/config.h"

namespace fg::train {

class Communicator;  // train/comm.h

struct RunOptions {
  std::string out_dir = "out";
  bool resume = false;     // continue the checkpoint in out_dir
  // Allow a fresh run into an out_dir that holds another run's files (checkpoint.json,
  // model-*.safetensors, optimizer-*.safetensors); without it such a directory is refused.
  // Contradicts `resume`.
  bool overwrite = false;
  int64_t stop_at = 0;     // stop (with a checkpoint) after this step, as if paused; 0 = never
  // The config keys given explicitly (on the command line). On resume they override the
  // checkpoint's values; for the architecture keys (model_config_keys()) a different value is
  // an error, since the weights would not fit.
  std::set<std::string> explicit_keys;
  std::ostream* out = nullptr;  // progress and summary; null = std::cout
  bool live = false;            // rewrite the progress line in place (stdout is a terminal)
  // Data parallel (train/comm.h): this worker's group, or null for a single process. Each rank
  // trains on its own batches (get_batch's rank and world), the gradients and the loss are
  // averaged over the ranks after the backward, and every rank keeps identical weights; rank 0
  // alone prints, locks out_dir and writes checkpoints. Evaluation splits its batches over the
  // ranks (evaluate_share) and averages them.
  Communicator* comm = nullptr;
  // Data parallel: gradients are averaged in buckets of about this many bytes, each started as
  // soon as the backward has finished its gradients (in the order it finishes them), on
  // NCCL's own stream while the backward goes on; 0: one averaging after the backward.
  int64_t bucket_bytes = int64_t(25) << 20;
  // Data parallel: ZeRO stage. 0: every rank keeps the whole optimizer state. 1: AdamW's
  // moments and master weights are sharded, whole parameters to each rank (assign_owners,
  // train/grad_buckets.h); each gradient is averaged onto its owner only, the owner updates
  // the parameter, and the new weights are broadcast from their owners. The checkpoint holds
  // the whole state (gathered to rank 0 when saved) and resumes on any number of GPUs.
  int64_t zero = 0;
};

struct TrainResult {
  int64_t start_step = 0, end_step = 0;
  double first_loss = NAN, last_loss = NAN;  // training loss of this run's first / last step
  double best_val_loss = NAN;
  double seconds = 0;
  bool interrupted = false;  // stopped by Ctrl-C (or request_stop()), in training or in the sample
  std::string sample;
};

// Runs training as configured. Throws fg::Error before writing anything for bad settings,
// data (missing, empty, binary, too short), checkpoints, a run that cannot fit in the device's
// memory, or an out_dir that holds another run's files (see RunOptions::overwrite); an
// allocation that fails later is reported with the run's sizes and what to lower.
//
// The run holds a DirectoryLock on run.out_dir from before its first write (a resume: before
// reading the checkpoint) to its end, so that a second run into it fails at once, and removes
// the temporary files a killed save left there. The checkpoint is written at every
// evaluation, when stopping at run.stop_at, and at the end.
//
// The learning-rate schedule runs over config.lr_decay_steps (set to config.steps when 0). A
// resumed run keeps the checkpoint's schedule unless --lr, --min-lr, --warmup or
// --lr-decay-steps are given, so a larger --steps trains on at min_lr; it says so before
// starting, and warns when given flags change the learning rate at the step it resumes from.
TrainResult train(TrainConfig config, const RunOptions& run);

// The mean loss over `batches` random batches of `tokens` (eval mode, no graph), drawn from a
// generator seeded with `seed`: the same batches at every evaluation. The model's mode and
// the default generator's state are restored afterwards.
double evaluate(nn::GPT& model, const std::vector<int32_t>& tokens, int64_t batch_size,
                int64_t batches, uint64_t seed);

// Data parallel: rank `rank` of `world` takes the batches i (of the same `batches` evaluate()
// draws) with i % world == rank, and returns their loss sum and count; summed over the ranks
// they give evaluate()'s mean.
struct LossSum {
  double sum = 0;
  int64_t count = 0;
};
LossSum evaluate_share(nn::GPT& model, const std::vector<int32_t>& tokens, int64_t batch_size,
                       int64_t batches, uint64_t seed, int64_t rank, int64_t world);

// Resolves a resumed run's config: the checkpoint's, with the explicitly given keys of
// `requested` on top, and the checkpoint's schedule length fixed (lr_decay_steps, or its
// steps for checkpoints that predate it). Throws when an architecture key differs.
TrainConfig resume_config(const TrainConfig& checkpoint, const TrainConfig& requested,
                          const std::set<std::string>& explicit_keys, const std::string& dir);

// Ctrl-C: while a SigintGuard lives, the first SIGINT only asks train() to stop after the
// current step (without writing anything half-done) or generate() to end the sample before
// its next token; a second one exits at once (130).
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
