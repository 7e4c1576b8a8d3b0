// The training loop (see train/trainer.h).
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "autograd/functions.h"
#include "train/checkpoint.h"
#include "train/corpus.h"
#include "train/data.h"
#include "train/fileio.h"
#include "train/optim.h"
#include "train/sample.h"
#include "train/tokenizer.h"

namespace fg::train {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Ctrl-C

namespace {
volatile std::sig_atomic_t g_stop = 0;
struct sigaction g_previous;

extern "C" void on_sigint(int) {
  if (g_stop) _exit(130);  // second Ctrl-C: leave now (files are only ever renamed into place)
  g_stop = 1;
}
}  // namespace

void request_stop() { g_stop = 1; }
bool stop_requested() { return g_stop != 0; }
void clear_stop() { g_stop = 0; }

SigintGuard::SigintGuard() {
  clear_stop();
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_previous);
}

SigintGuard::~SigintGuard() { sigaction(SIGINT, &g_previous, nullptr); }

// ---------------------------------------------------------------------------------------------
// helpers

namespace {

// Saves and restores the default generator (dropout masks) around work that must not shift
// the training run's random stream: evaluation and sampling.
struct DefaultGeneratorGuard {
  uint64_t seed = default_generator().seed(), offset = default_generator().offset();
  ~DefaultGeneratorGuard() {
    default_generator().manual_seed(seed);
    default_generator().set_offset(offset);
  }
};

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = std::lround(s);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm%02lds", t / 3600, (t / 60) % 60, t % 60);
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

std::string format_count(double n) {
  char buf[32];
  if (n >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else if (n >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", n);
  return buf;
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

// A prompt of one token to start samples from: a newline when the vocabulary has one.
std::vector<int32_t> default_prompt(const Tokenizer& tok) {
  try {
    return tok.encode("\n");
  } catch (const Error&) {
    return {0};
  }
}

}  // namespace

TrainConfig resume_config(const TrainConfig& checkpoint, const TrainConfig& requested,
                          const std::set<std::string>& explicit_keys, const std::string& dir) {
  json ck = to_json(checkpoint), req = to_json(requested);
  std::string conflicts;
  const auto arch = model_config_keys();
  for (const std::string& key : explicit_keys) {
    if (!req.contains(key)) continue;
    bool is_arch = std::find(arch.begin(), arch.end(), key) != arch.end();
    if (is_arch && ck.at(key) != req.at(key))
      conflicts += "\n  " + key + ": " + ck.at(key).dump() + " in the checkpoint, " +
                   req.at(key).dump() + " requested";
    else
      ck[key] = req[key];
  }
  FG_CHECK(conflicts.empty(), "cannot resume '", dir,
           "': the checkpoint is from another model config:", conflicts,
           "\ndrop these flags to continue it, or train a new model with another --out");
  TrainConfig c = checkpoint;
  update_from_json(c, ck);
  return c;
}

double evaluate(nn::GPT& model, const std::vector<int32_t>& tokens, int64_t batch_size,
                int64_t batches, uint64_t seed) {
  DefaultGeneratorGuard keep_rng;
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  Generator gen(seed);
  const Device device = model.wte->weight.device();
  double total = 0;
  int64_t done = 0;
  for (int64_t i = 0; i < batches; ++i) {
    Batch b = get_batch(tokens, batch_size, model.config.block_size_, gen, device);
    total += model.loss(b.x, b.y).item();
    ++done;
    if (stop_requested()) break;
  }
  model.train(was_training);
  return done > 0 ? total / double(done) : NAN;
}

// ---------------------------------------------------------------------------------------------
// The pieces of a run, in the order train() calls them. A Run holds everything that lives
// from one step to the next.

namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

struct Run {
  Run(TrainConfig config, const RunOptions& options)
      : cfg(std::move(config)), options(options), out(options.out ? *options.out : std::cout) {}

  TrainConfig cfg;
  const RunOptions& options;
  std::ostream& out;
  Device device = Device::cpu();
  // data
  std::string data_path;
  std::unique_ptr<Tokenizer> tokenizer;
  size_t num_tokens = 0;
  TextSplits splits;
  // model and optimisation
  nn::GPTConfig model_config;
  std::shared_ptr<nn::GPT> model;
  std::unique_ptr<AdamW> opt;
  std::vector<Tensor> params;
  LRSchedule schedule;
  int64_t tokens_per_step = 0;
  int64_t end_step = 0;  // the step this run stops at (--stop-at or the last)
  TrainState state;      // step, RNG offsets, best val loss: what a checkpoint stores
  Generator data_gen;    // the training batches
  // clock
  clock::time_point t0;
  double elapsed_before = 0;  // training time of the earlier runs at the last save
  double step_seconds = 0;    // time inside train_step(), for tokens/s
  int64_t steps_timed = 0;
  TrainResult result;

  double elapsed() const { return seconds_since(t0); }
};

// ---- set-up: everything is checked before anything is written ----

// The resolved config (the checkpoint's on --resume) and the checkpoint to continue, if any.
std::unique_ptr<Checkpoint> check_settings(Run& r) {
  const RunOptions& o = r.options;
  std::unique_ptr<Checkpoint> ckpt;
  if (o.resume) {
    ckpt = std::make_unique<Checkpoint>(load_checkpoint(o.out_dir, true));
    r.cfg = resume_config(ckpt->config, r.cfg, o.explicit_keys, o.out_dir);
  } else if (has_checkpoint(o.out_dir) && !o.overwrite) {
    throw Error(str("'", o.out_dir, "' already holds a checkpoint; pass --resume to continue "
                    "it, --overwrite to replace it, or --out DIR to train elsewhere"));
  }
  r.cfg.validate();
  std::error_code ec;
  FG_CHECK(!std::filesystem::exists(o.out_dir, ec) || std::filesystem::is_directory(o.out_dir, ec),
           "--out '", o.out_dir, "' exists and is not a directory");
  r.device = device_from_string(r.cfg.device);
  return ckpt;
}

// The text, its tokenizer (the checkpoint's on resume) and the train/val split.
void load_data(Run& r, Checkpoint* ckpt) {
  std::string note;
  r.data_path = r.cfg.data.empty() ? default_corpus(&note) : r.cfg.data;
  if (!note.empty()) r.out << note << "\n";
  const std::string text = read_file(r.data_path, "data file");
  FG_CHECK(!text.empty(), "data file '", r.data_path,
           "' is empty; give a text file with some content");
  r.tokenizer = ckpt ? std::move(ckpt->tokenizer) : Tokenizer::create(r.cfg.tokenizer, text);
  std::vector<int32_t> tokens;
  try {
    tokens = r.tokenizer->encode(text);
  } catch (const Error& e) {
    throw Error(str("data file '", r.data_path, "': ", e.what()));
  }
  r.num_tokens = tokens.size();
  r.splits = split_tokens(tokens, r.cfg.block_size, r.cfg.val_fraction, r.data_path);
}

// The model, AdamW, the schedule and the random streams, fresh or from the checkpoint.
void build_model(Run& r, std::unique_ptr<Checkpoint> ckpt) {
  const TrainConfig& cfg = r.cfg;
  const bool bf16 = cfg.dtype == "bf16";
  r.model_config = cfg.model_config(r.tokenizer->vocab_size());
  r.model = std::make_shared<nn::GPT>(r.model_config);
  if (ckpt) r.model->load_state_dict(ckpt->weights);
  r.model->to(r.device);
  // Mixed precision: the model computes in bf16; AdamW keeps fp32 master weights, which start
  // from the exact fp32 values (the initialisation, or the checkpoint's weights below).
  std::map<std::string, Tensor> fp32_init;
  if (bf16) {
    for (auto& [name, p] : r.model->named_parameters()) fp32_init[name] = ops::clone(p);
    r.model->to(DType::bf16);
  }
  r.model->train();
  r.opt = std::make_unique<AdamW>(r.model->named_parameters(),
                                  AdamWOptions()
                                      .lr(cfg.lr)
                                      .betas(cfg.beta1, cfg.beta2)
                                      .eps(cfg.eps)
                                      .weight_decay(cfg.weight_decay));
  r.state.data_seed = cfg.seed * 0x9E3779B97F4A7C15ull + 1;
  r.state.dropout_seed = cfg.seed * 0x9E3779B97F4A7C15ull + 2;
  if (bf16 && !ckpt) r.opt->load_fp32_weights(fp32_init);
  fp32_init.clear();
  if (ckpt) {
    r.state = ckpt->state;
    r.opt->load_state(ckpt->optimizer, r.state.step, &ckpt->weights);
    ckpt.reset();  // free the host copies
  }
  r.data_gen = Generator(r.state.data_seed);
  r.data_gen.set_offset(r.state.data_offset);
  default_generator().manual_seed(r.state.dropout_seed);
  default_generator().set_offset(r.state.dropout_offset);
  r.params = r.model->parameters();
  r.schedule = LRSchedule{cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps};
  r.tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum;
  r.end_step = r.options.stop_at > 0 ? std::min(r.options.stop_at, cfg.steps) : cfg.steps;
}

void print_header(Run& r) {
  const TrainConfig& cfg = r.cfg;
  std::ostream& out = r.out;
  out << "flashgrad train: preset " << cfg.preset << " | "
      << format_count(double(r.model->num_parameters())) << " parameters | " << cfg.n_layer
      << " layers, " << cfg.n_head << " heads"
      << (r.model_config.kv_heads() != cfg.n_head
              ? " (" + std::to_string(r.model_config.kv_heads()) + " kv)"
              : "")
      << ", width " << cfg.n_embd << ", context " << cfg.block_size << " | " << r.device.str()
      << " " << cfg.dtype << " | attention " << cfg.attn << "\n";
  out << "data: " << r.data_path << ": " << format_count(double(r.num_tokens)) << " tokens, "
      << r.tokenizer->type() << " vocabulary of " << r.tokenizer->vocab_size() << " | train "
      << format_count(double(r.splits.train.size())) << ", val "
      << format_count(double(r.splits.val.size())) << "\n";
  out << "optimisation: batch " << cfg.batch_size << " x " << cfg.block_size << " tokens x "
      << cfg.grad_accum << " accumulation | " << cfg.steps << " steps | lr " << sci(cfg.lr)
      << " -> " << sci(cfg.min_lr) << ", warm-up " << cfg.warmup << " | AdamW betas ("
      << cfg.beta1 << ", " << cfg.beta2 << "), weight decay " << cfg.weight_decay << ", clip "
      << cfg.grad_clip << " | dropout " << cfg.dropout << "\n";
  if (r.options.resume)
    out << "resuming " << r.options.out_dir << " at step " << r.state.step
        << (std::isnan(r.state.best_val_loss)
                ? std::string()
                : " (best val loss " + fixed(r.state.best_val_loss, 4) + ")")
        << "\n";
  out.flush();
}

// Peak memory and time are counted from here.
void start_clock(Run& r) {
  r.result.start_step = r.state.step;
  r.result.best_val_loss = r.state.best_val_loss;
  reset_peak_memory(r.device);
  r.t0 = clock::now();
  r.elapsed_before = r.state.elapsed_seconds;
  if (r.state.step >= r.cfg.steps)
    r.out << "the checkpoint is already at step " << r.state.step << " of " << r.cfg.steps
          << "; pass a larger --steps to train further\n";
}

// ---- the step ----

// True once Ctrl-C (or request_stop()) has asked the run to stop.
bool interrupted(Run& r) {
  if (stop_requested()) r.result.interrupted = true;
  return r.result.interrupted;
}

struct StepStats {
  double loss, lr;
};

// One optimizer step: grad_accum micro-batches forward and backward, the gradient norm
// (a non-finite loss or norm stops the run before anything is saved), clipping, AdamW.
StepStats train_step(Run& r) {
  const TrainConfig& cfg = r.cfg;
  const auto t = clock::now();
  const double lr = r.schedule.at(r.state.step);
  r.opt->set_lr(lr);
  double loss_sum = 0;
  for (int64_t micro = 0; micro < cfg.grad_accum; ++micro) {
    Batch b = get_batch(r.splits.train, cfg.batch_size, cfg.block_size, r.data_gen, r.device);
    Tensor loss = r.model->loss(b.x, b.y);
    loss_sum += loss.item();
    (cfg.grad_accum > 1 ? loss * (1.0 / double(cfg.grad_accum)) : loss).backward();
  }
  const double loss = loss_sum / double(cfg.grad_accum);
  const double norm = grad_norm(r.params);
  FG_CHECK(std::isfinite(loss) && std::isfinite(norm), "training diverged at step ",
           r.state.step + 1, ": loss ", loss, ", gradient norm ", norm,
           "; the last checkpoint is untouched; try a lower --lr or --dtype fp32");
  r.opt->step(clip_coefficient(norm, cfg.grad_clip));
  r.opt->zero_grad();
  r.state.step++;
  if (std::isnan(r.result.first_loss)) r.result.first_loss = loss;
  r.result.last_loss = loss;
  synchronize(r.device);
  r.step_seconds += seconds_since(t);
  r.steps_timed++;
  return {loss, lr};
}

// On a terminal the progress line is rewritten in place; in a log, one every log_interval.
void clear_line(Run& r) {
  if (r.options.live) r.out << "\r\033[K";
}

void print_progress(Run& r, const StepStats& s) {
  const int64_t step = r.state.step;
  if (!(r.options.live || step % r.cfg.log_interval == 0 || step == r.result.start_step + 1))
    return;
  const double per_step = r.step_seconds / double(r.steps_timed);
  const double tok_s = double(r.tokens_per_step) / per_step;
  const double eta =
      r.elapsed() / double(step - r.result.start_step) * double(r.end_step - step);
  clear_line(r);
  r.out << "step " << std::setw(int(std::to_string(r.cfg.steps).size())) << step << "/"
        << r.cfg.steps << " | loss " << fixed(s.loss, 4) << " | lr " << sci(s.lr) << " | "
        << format_count(tok_s) << " tok/s | ETA " << format_duration(eta);
  if (!r.options.live) r.out << "\n";
  r.out.flush();
}

// ---- evaluation and checkpoints ----

bool evaluation_due(const Run& r) {
  return r.state.step % r.cfg.eval_interval == 0 || r.state.step == r.cfg.steps;
}

struct Losses {
  double train, val;
};

// The mean losses over eval_batches batches of each split; the same batches every time.
Losses evaluate_splits(Run& r) {
  const uint64_t eval_seed = r.cfg.seed + 7;
  const double train_loss =
      evaluate(*r.model, r.splits.train, r.cfg.batch_size, r.cfg.eval_batches, eval_seed);
  const double val_loss =
      evaluate(*r.model, r.splits.val, r.cfg.batch_size, r.cfg.eval_batches, eval_seed);
  return {train_loss, val_loss};
}

void save(Run& r) {
  r.state.data_offset = r.data_gen.offset();
  r.state.dropout_offset = default_generator().offset();
  r.state.elapsed_seconds = r.elapsed_before + r.elapsed();
  save_checkpoint(r.options.out_dir, r.cfg, *r.tokenizer, *r.opt, r.state);
}

// Records the best val loss, saves the checkpoint, prints the eval line.
void checkpoint_evaluation(Run& r, const Losses& losses) {
  const bool best = std::isnan(r.state.best_val_loss) || losses.val < r.state.best_val_loss;
  if (best) {
    r.state.best_val_loss = losses.val;
    r.state.best_val_step = r.state.step;
  }
  r.result.best_val_loss = r.state.best_val_loss;
  save(r);
  clear_line(r);
  r.out << "eval step " << r.state.step << ": train loss " << fixed(losses.train, 4)
        << " | val loss " << fixed(losses.val, 4) << (best ? " (best)" : "")
        << " | checkpoint saved\n";
  r.out.flush();
}

void checkpoint_at_stop(Run& r) {
  save(r);
  clear_line(r);
  r.out << "stopped at step " << r.state.step << " (--stop-at); checkpoint saved\n";
}

// ---- report ----

void stop_clock(Run& r) {
  if (r.options.live) r.out << "\n";
  r.result.end_step = r.state.step;
  r.result.seconds = r.elapsed();
}

void print_interrupted(Run& r) {
  r.out << "interrupted at step " << r.state.step << "; the last checkpoint in "
        << r.options.out_dir
        << (has_checkpoint(r.options.out_dir) ? " is intact" : " (none yet)") << "\n";
  r.out.flush();
}

void print_summary(Run& r) {
  std::ostream& out = r.out;
  const MemoryStats mem = memory_stats(r.device);
  const int64_t steps_run = r.result.end_step - r.result.start_step;
  out << "done: " << steps_run << " steps in " << format_duration(r.result.seconds);
  if (steps_run > 0)
    out << " (" << format_count(double(r.tokens_per_step) * double(r.steps_timed) / r.step_seconds)
        << " tok/s) | loss " << fixed(r.result.first_loss, 4) << " -> "
        << fixed(r.result.last_loss, 4);
  if (!std::isnan(r.state.best_val_loss))
    out << " | best val loss " << fixed(r.state.best_val_loss, 4) << " at step "
        << r.state.best_val_step;
  out << "\n";
  out << "peak memory: " << format_bytes(mem.peak_allocated) << " allocated on " << r.device.str();
  if (r.device.is_cuda()) out << " (" << format_bytes(mem.peak_reserved) << " reserved)";
  out << "\n";
  if (has_checkpoint(r.options.out_dir))
    out << "checkpoint: " << r.options.out_dir << " (step " << r.state.step << ")\n";
}

// A sample from the trained model, without moving the training run's random stream.
void print_sample(Run& r) {
  DefaultGeneratorGuard keep_rng;
  SampleOptions so;
  so.max_new_tokens = r.cfg.sample_tokens;
  so.temperature = 0.8;
  so.top_k = 40;
  so.seed = r.cfg.seed;
  std::vector<int32_t> prompt = default_prompt(*r.tokenizer);
  std::vector<int32_t> ids = generate(*r.model, prompt, so);
  r.result.sample = r.tokenizer->decode(prompt) + r.tokenizer->decode(ids);
  r.out << "--- sample (" << so.max_new_tokens << " tokens, temperature " << so.temperature
        << ", top-k " << so.top_k << ") ---" << r.result.sample << "\n---\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// the loop

TrainResult train(TrainConfig config, const RunOptions& options) {
  Run run(std::move(config), options);
  std::unique_ptr<Checkpoint> ckpt = check_settings(run);
  load_data(run, ckpt.get());
  build_model(run, std::move(ckpt));
  print_header(run);

  start_clock(run);
  while (run.state.step < run.end_step && !interrupted(run)) {
    const StepStats step = train_step(run);
    print_progress(run, step);
    if (evaluation_due(run)) {
      const Losses losses = evaluate_splits(run);
      if (interrupted(run)) break;  // Ctrl-C during evaluation: the last checkpoint stays
      checkpoint_evaluation(run, losses);
    } else if (run.state.step == options.stop_at) {
      checkpoint_at_stop(run);
    }
  }
  stop_clock(run);

  if (run.result.interrupted) {
    print_interrupted(run);
    return run.result;
  }
  print_summary(run);
  if (run.cfg.sample_tokens > 0 && run.state.step >= run.cfg.steps) print_sample(run);
  run.out.flush();
  return run.result;
}

}  // namespace fg::train
