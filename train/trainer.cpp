// The training loop (see train/trainer.h).
#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <new>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>
#include <unordered_map>

#include "autograd/functions.h"
#include "kernels/attention/attention.h"
#include "train/checkpoint.h"
#include "train/comm.h"
#include "train/corpus.h"
#include "train/data.h"
#include "train/fileio.h"
#include "train/grad_buckets.h"
#include "train/launch.h"
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
  // The schedule keeps the length it started with (checkpoints written before lr_decay_steps
  // existed decay over their steps), unless --lr-decay-steps is given.
  ck["lr_decay_steps"] = checkpoint.schedule_steps();
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

LossSum evaluate_share(nn::GPT& model, const std::vector<int32_t>& tokens, int64_t batch_size,
                       int64_t batches, uint64_t seed, int64_t rank, int64_t world) {
  DefaultGeneratorGuard keep_rng;
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard ng;
  Generator gen(seed);
  const Device device = model.wte->weight.device();
  LossSum s;
  for (int64_t i = 0; i < batches; ++i) {
    if (i % world != rank) {  // another rank's batch: only move past its draw
      gen.set_offset(gen.offset() + 1);
      continue;
    }
    Batch b = get_batch(tokens, batch_size, model.config.block_size_, gen, device);
    s.sum += model.loss(b.x, b.y).item();
    ++s.count;
    if (stop_requested()) break;
  }
  model.train(was_training);
  return s;
}

double evaluate(nn::GPT& model, const std::vector<int32_t>& tokens, int64_t batch_size,
                int64_t batches, uint64_t seed) {
  const LossSum s = evaluate_share(model, tokens, batch_size, batches, seed, 0, 1);
  return s.count > 0 ? s.sum / double(s.count) : NAN;
}

// ---------------------------------------------------------------------------------------------
// The pieces of a run, in the order train() calls them. A Run holds everything that lives
// from one step to the next.

namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

// Where the ranks other than 0 of a data-parallel run print: nowhere.
std::ostream& null_stream() {
  static std::ostream s(nullptr);
  return s;
}

struct Run {
  Run(TrainConfig config, const RunOptions& options)
      : cfg(std::move(config)),
        options(options),
        comm(options.comm),
        rank(comm ? comm->rank() : 0),
        world(comm ? comm->world() : 1),
        lead(rank == 0),
        out(!lead ? null_stream() : options.out ? *options.out : std::cout) {}

  TrainConfig cfg;
  const RunOptions& options;
  Communicator* comm;         // null: a single process
  int64_t rank, world;        // this worker's place in the data-parallel group
  bool lead;                  // rank 0: prints, locks out_dir, writes checkpoints
  std::ostream& out;
  Device device = Device::cpu();
  std::unique_ptr<DirectoryLock> lock;  // on options.out_dir, for the whole run
  int64_t saved_step = -1;              // the step of the checkpoint in out_dir; -1: none
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
  // ZeRO-1 (options.zero): the owner rank of each parameter (params order), or empty.
  std::vector<int64_t> owners;
  std::unordered_map<const void*, int64_t> param_index;  // a parameter's data -> its index
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

// The files of a run in `dir`: checkpoint.json and model-* / optimizer-* safetensors files
// (those of a checkpoint, or left by a run that never committed one).
std::vector<std::string> run_files(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const bool weights = (n.rfind("model-", 0) == 0 || n.rfind("optimizer-", 0) == 0) &&
                         n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0;
    if (weights || n == "checkpoint.json") found.push_back(n);
  }
  std::sort(found.begin(), found.end());
  return found;
}

// A fresh run must not mix its files with another run's: refuse a directory holding any,
// unless --overwrite (the earlier files are then removed by the first save).
void check_fresh_out_dir(Run& r, bool locked) {
  const RunOptions& o = r.options;
  const std::vector<std::string> files = run_files(o.out_dir);
  if (files.empty()) return;
  if (!o.overwrite) {
    FG_CHECK(!has_checkpoint(o.out_dir), "'", o.out_dir, "' already holds a checkpoint; pass "
             "--resume to continue it, --overwrite to replace it, or --out DIR to train elsewhere");
    std::string names;
    for (size_t i = 0; i < files.size() && i < 3; ++i) names += (i ? ", " : "") + files[i];
    if (files.size() > 3) names += str(" and ", files.size() - 3, " more");
    throw Error(str("'", o.out_dir, "' holds weights of another run (", names, ") but no "
                    "checkpoint.json; pass --overwrite to replace them, or --out DIR to train "
                    "elsewhere"));
  }
  if (locked)
    r.out << "--overwrite: the " << files.size() << " checkpoint file(s) in " << o.out_dir
          << " are replaced at the first save\n";
}

void check_out_dir_is_directory(const std::string& dir) {
  std::error_code ec;
  FG_CHECK(!std::filesystem::exists(dir, ec) || std::filesystem::is_directory(dir, ec), "--out '",
           dir, "' is a file, not a directory; give a directory for the checkpoint");
}

// Locks out_dir for the rest of the run (a second run into it fails at once) and removes the
// temporary files a killed save left there.
void lock_out_dir(Run& r) {
  r.lock = std::make_unique<DirectoryLock>(r.options.out_dir, "flashgrad train");
  const int removed = remove_stale_temporaries(r.options.out_dir);
  if (removed > 0)
    r.out << "removed " << removed << " temporary file(s) that an interrupted save left in "
          << r.options.out_dir << "\n";
}

// What a resumed run does to the learning-rate schedule, said before it starts.
void explain_resumed_schedule(Run& r, const TrainConfig& before, int64_t step) {
  const TrainConfig& now = r.cfg;
  const LRSchedule old_s{before.lr, before.min_lr, before.warmup, before.schedule_steps()};
  const LRSchedule new_s{now.lr, now.min_lr, now.warmup, now.schedule_steps()};
  const double lr_before = old_s.at(step), lr_now = new_s.at(step);
  if (std::fabs(lr_now - lr_before) > 1e-9 * std::max(lr_before, lr_now))
    r.out << "warning: the learning rate at step " << step << " changes from " << sci(lr_before)
          << " (the checkpoint's schedule) to " << sci(lr_now) << ", because --lr, --min-lr, "
          << "--warmup or --lr-decay-steps differ from the checkpoint's\n";
  if (now.steps > now.schedule_steps() && now.steps > step)
    r.out << "note: the learning rate decays over the first " << now.schedule_steps()
          << " steps of this run; steps " << std::max(step, now.schedule_steps()) + 1 << " to "
          << now.steps << " train at --min-lr " << sci(now.min_lr) << " (add --lr-decay-steps "
          << now.steps << " to stretch the cosine over all " << now.steps
          << " steps instead). To pause a run and continue it exactly, keep --steps and stop "
             "with --stop-at STEP\n";
}

// The resolved config (the checkpoint's on --resume) and the checkpoint to continue, if any.
// A resumed run locks its directory first, since it reads the checkpoint it will replace.
std::unique_ptr<Checkpoint> check_settings(Run& r) {
  const RunOptions& o = r.options;
  FG_CHECK(!(o.resume && o.overwrite), "--resume and --overwrite contradict each other: "
           "--resume continues the checkpoint in '", o.out_dir, "', --overwrite replaces it; "
           "pass one of them");
  FG_CHECK(o.stop_at >= 0, "--stop-at must be a whole number from 0 to 1000000000, got ",
           o.stop_at);
  r.cfg.validate();
  check_out_dir_is_directory(o.out_dir);
  std::unique_ptr<Checkpoint> ckpt;
  if (o.resume) {
    std::error_code ec;
    FG_CHECK(std::filesystem::exists(o.out_dir, ec), "--resume: '", o.out_dir, "' does not "
             "exist, so there is nothing to resume; train without --resume first");
    if (r.lead) lock_out_dir(r);
    ckpt = std::make_unique<Checkpoint>(load_checkpoint(o.out_dir, true));
    r.cfg = resume_config(ckpt->config, r.cfg, o.explicit_keys, o.out_dir);
    r.cfg.validate();
    FG_CHECK(o.stop_at == 0 || o.stop_at > ckpt->state.step, "--stop-at ", o.stop_at,
             " is not after the checkpoint's step ", ckpt->state.step, " in '", o.out_dir,
             "'; give a later step");
    r.saved_step = ckpt->state.step;
    explain_resumed_schedule(r, ckpt->config, ckpt->state.step);
  } else if (r.lead) {
    check_fresh_out_dir(r, /*locked=*/false);  // and again once locked, in train()
  }
  if (!o.resume && r.cfg.lr_decay_steps == 0) r.cfg.lr_decay_steps = r.cfg.steps;
  r.device = device_from_string(r.cfg.device);
  const int64_t head_dim = r.cfg.n_embd / r.cfg.n_head;
  // (the trainer's dtypes are fp32 and bf16, never f64)
  FG_CHECK(!r.device.is_cuda() || r.cfg.attn != "flash" ||
               attention_cuda_supports_head_dim(head_dim, DType::f32),
           "head dim ", head_dim, " (--n-embd ", r.cfg.n_embd, " / --n-head ", r.cfg.n_head,
           ") is not one the CUDA flash attention kernels support (", attention_cuda_head_dims(),
           "); change --n-embd or --n-head, or use --attn naive");
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
  check_looks_like_text(text, r.data_path);
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

// What to lower when a run does not fit in memory.
const char* kLowerSizes = "lower --batch-size (--grad-accum N keeps the tokens per step), "
                          "--block-size, --n-embd or --n-layer";

// Refuses a run that cannot fit in the device's memory before anything is allocated: a lower
// bound of what a step holds (the weights with their gradients and AdamW moments, 16 bytes a
// parameter, and the activations a micro-batch keeps for backward: at least 8 x n_embd values
// a token per layer, the logits, and for naive attention the scores) against the device total.
void check_memory(Run& r) {
  const TrainConfig& c = r.cfg;
  const size_t total = memory_stats(r.device).device_total;
  if (total == 0) return;  // unknown: the allocator reports a failure when it happens
  double params = 0;
  for (const auto& [name, shape] : nn::gpt_parameter_shapes(c.model_config(r.tokenizer->vocab_size())))
    params += double(shape_numel(shape));
  const double elem = c.dtype == "bf16" ? 2 : 4;
  const double tokens = double(c.batch_size) * double(c.block_size);
  double per_token = double(c.n_layer) * 8 * double(c.n_embd) + double(r.tokenizer->vocab_size());
  if (c.attn == "naive") per_token += double(c.n_layer) * double(c.n_head) * double(c.block_size);
  const double state_bytes = 16 * params, activation_bytes = tokens * per_token * elem;
  const double need = state_bytes + activation_bytes;
  auto bytes = [](double b) { return b < 1.8e19 ? format_bytes(size_t(b)) : str(b, " bytes"); };
  FG_CHECK(need <= double(total), "this run needs more memory than ", r.device.str(), " has: at "
           "least ", bytes(need), " (", format_count(params), " parameters with their gradients "
           "and AdamW moments: ", bytes(state_bytes), "; activations of a micro-batch of ",
           c.batch_size, " x ", c.block_size, " tokens: ", bytes(activation_bytes),
           "), the device has ", format_bytes(total), "; ", kLowerSizes);
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
  // ZeRO-1: this rank's share of the parameters; the optimizer holds state for those only.
  const NamedTensors named = r.model->named_parameters();
  std::vector<bool> owned;
  if (r.options.zero == 1 && r.world > 1) {
    std::vector<int64_t> numels;
    for (const auto& [name, p] : named) numels.push_back(p.numel());
    r.owners = assign_owners(numels, r.world);
    for (int64_t o : r.owners) owned.push_back(o == r.rank);
  }
  r.opt = std::make_unique<AdamW>(named,
                                  AdamWOptions()
                                      .lr(cfg.lr)
                                      .betas(cfg.beta1, cfg.beta2)
                                      .eps(cfg.eps)
                                      .weight_decay(cfg.weight_decay),
                                  owned);
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
  // Each rank its own dropout masks (the checkpoint keeps rank 0's seed; the offsets advance
  // alike on every rank).
  default_generator().manual_seed(r.state.dropout_seed +
                                  0x9E3779B97F4A7C15ull * uint64_t(r.rank));
  default_generator().set_offset(r.state.dropout_offset);
  r.params = r.model->parameters();
  for (size_t i = 0; i < r.owners.size(); ++i) r.param_index[r.params[i].data_ptr()] = int64_t(i);
  r.schedule = LRSchedule{cfg.lr, cfg.min_lr, cfg.warmup, cfg.schedule_steps()};
  r.tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum * r.world;
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
  if (r.world > 1)
    out << "data parallel: " << r.world << " GPUs (one process each, NCCL), batch "
        << cfg.batch_size << " per GPU, " << cfg.batch_size * r.world << " in all, gradients "
        << "averaged in "
        << (r.comm->reduce_dtype() ? std::string(*r.comm->reduce_dtype() == DType::bf16 ? "bf16" : "fp32")
                                   : "their own dtype")
        << "\n";
  out << "optimisation: batch " << cfg.batch_size << " x " << cfg.block_size << " tokens x "
      << cfg.grad_accum << " accumulation | " << cfg.steps << " steps | lr " << sci(cfg.lr)
      << " -> " << sci(cfg.min_lr) << ", warm-up " << cfg.warmup
      << (cfg.schedule_steps() != cfg.steps
              ? ", cosine over " + std::to_string(cfg.schedule_steps()) + " steps"
              : std::string())
      << " | AdamW betas ("
      << cfg.beta1 << ", " << cfg.beta2 << "), weight decay " << cfg.weight_decay << ", clip "
      << cfg.grad_clip << " | dropout " << cfg.dropout << "\n";
  out << "checkpoints: " << r.options.out_dir << " (every " << cfg.eval_interval
      << " steps and at the end)\n";
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

// The same, agreed by every rank of a data-parallel run (a collective: every rank calls it at
// the same points of the loop), so that they all stop after the same step.
bool interrupted_everywhere(Run& r) {
  const bool local = interrupted(r);
  if (r.world == 1) return local;
  r.result.interrupted = r.comm->any(local);
  return r.result.interrupted;
}

struct StepStats {
  double loss, lr;
};

// Where the last checkpoint stands, for messages about a run that stops with an error.
std::string checkpoint_status(const Run& r) {
  return r.saved_step >= 0 ? str("the checkpoint of step ", r.saved_step, " in ",
                                 r.options.out_dir, " is intact")
                           : str("no checkpoint was saved in ", r.options.out_dir);
}

// The message of a non-finite loss or gradient norm: the remedies that apply to this run.
std::string diverged(const Run& r, double loss, double norm) {
  std::string remedies = str("a lower --lr (now ", sci(r.cfg.lr), ")");
  if (r.cfg.grad_clip == 0) remedies += ", --grad-clip 1";
  if (r.cfg.dtype != "fp32") remedies += ", --dtype fp32";
  return str("training diverged at step ", r.state.step + 1, ": loss ", loss, ", gradient norm ",
             norm, "; try ", remedies, "; ", checkpoint_status(r));
}

// Gradients gathered, as the backward finishes them, into buckets of about `bytes`, each
// handed to the communicator to average as soon as it is full.
// With ZeRO-1, each gradient goes to its owner (root) only.
struct GradBuckets {
  GradBuckets(Communicator* c, int64_t b, bool to_owners) : comm(c), bytes(b), rooted(to_owners) {}
  Communicator* comm;
  int64_t bytes;
  bool rooted;
  std::vector<Tensor> current;
  std::vector<int64_t> roots;
  int64_t filled = 0;
  void add(const Tensor& g, int64_t root) {
    if (!g.defined()) return;
    current.push_back(g);
    roots.push_back(root);
    filled += int64_t(g.nbytes());
    if (filled >= bytes) flush();
  }
  void flush() {
    if (current.empty()) return;
    comm->start_mean(current, rooted ? &roots : nullptr);
    current.clear();
    roots.clear();
    filled = 0;
  }
};

// ZeRO-1: the owner of parameter `leaf` (a leaf of the model's graph).
int64_t owner_of(const Run& r, const Tensor& leaf) {
  if (r.owners.empty()) return 0;
  auto it = r.param_index.find(leaf.data_ptr());
  FG_CHECK(it != r.param_index.end(), "ZeRO: a gradient for a tensor that is not a parameter");
  return r.owners[size_t(it->second)];
}

// One optimizer step: grad_accum micro-batches forward and backward, the gradient norm
// (a non-finite loss or norm stops the run before anything is saved), clipping, AdamW.
StepStats train_step(Run& r) {
  const TrainConfig& cfg = r.cfg;
  const auto t = clock::now();
  const double lr = r.schedule.at(r.state.step);
  r.opt->set_lr(lr);
  double loss_sum = 0;
  const bool overlap = r.world > 1 && r.options.bucket_bytes > 0;
  for (int64_t micro = 0; micro < cfg.grad_accum; ++micro) {
    Batch b = get_batch(r.splits.train, cfg.batch_size, cfg.block_size, r.data_gen, r.device,
                        r.rank, r.world);
    Tensor loss = r.model->loss(b.x, b.y);
    loss_sum += loss.item();
    Tensor scaled = cfg.grad_accum > 1 ? loss * (1.0 / double(cfg.grad_accum)) : loss;
    if (overlap && micro + 1 == cfg.grad_accum) {
      // Data parallel, the last micro-batch: each bucket of finished gradients starts its
      // averaging across the GPUs while the backward goes on (every rank finishes them in the
      // same order, so the buckets match).
      GradBuckets buckets(r.comm, r.options.bucket_bytes, !r.owners.empty());
      {
        GradReadyHookGuard hook([&](const Tensor& leaf) { buckets.add(leaf.grad(), owner_of(r, leaf)); });
        scaled.backward();
      }
      buckets.flush();
      r.comm->finish_means();
    } else {
      scaled.backward();
    }
  }
  double loss = loss_sum / double(cfg.grad_accum);
  if (r.world > 1) {  // the mean over the ranks, of the gradients (unless done above) and loss
    if (!overlap) {
      std::vector<Tensor> grads;
      for (const Tensor& p : r.params) grads.push_back(p.grad());
      r.comm->all_reduce_mean(grads, r.owners.empty() ? nullptr : &r.owners);
    }
    loss = r.comm->all_reduce_sum(loss) / double(r.world);
  }
  double norm = 0;
  if (r.owners.empty()) {
    norm = grad_norm(r.params);
  } else {  // ZeRO-1: each rank holds the averaged gradients of its own parameters only
    std::vector<Tensor> mine;
    for (size_t i = 0; i < r.params.size(); ++i)
      if (r.owners[i] == r.rank) mine.push_back(r.params[i]);
    const double part = grad_norm(mine);
    norm = std::sqrt(r.comm->all_reduce_sum(part * part));
  }
  if (!std::isfinite(loss) || !std::isfinite(norm)) throw Error(diverged(r, loss, norm));
  r.opt->step(clip_coefficient(norm, cfg.grad_clip));
  if (!r.owners.empty()) r.comm->broadcast(r.params, r.owners);  // the new weights, from owners
  r.opt->zero_grad();
  r.state.step++;
  if (std::isnan(r.result.first_loss)) r.result.first_loss = loss;
  r.result.last_loss = loss;
  // ZeRO-1: this waits for the owners' broadcast, that is for the other ranks (the hang
  // watchdog is told, train/launch.h).
  if (!r.owners.empty()) heartbeat(true);
  synchronize(r.device);
  if (!r.owners.empty()) heartbeat(false);
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

// The mean losses over eval_batches batches of each split; the same batches every time. Data
// parallel: each rank evaluates its share of them, and the sums meet.
Losses evaluate_splits(Run& r) {
  const uint64_t eval_seed = r.cfg.seed + 7;
  auto mean = [&](const std::vector<int32_t>& split) {
    LossSum s = evaluate_share(*r.model, split, r.cfg.batch_size, r.cfg.eval_batches, eval_seed,
                               r.rank, r.world);
    if (r.world > 1) {
      s.sum = r.comm->all_reduce_sum(s.sum);
      s.count = int64_t(std::llround(r.comm->all_reduce_sum(double(s.count))));
    }
    return s.count > 0 ? s.sum / double(s.count) : NAN;
  };
  const double train_loss = mean(r.splits.train);
  const double val_loss = mean(r.splits.val);
  return {train_loss, val_loss};
}

// Data parallel: every rank calls this at the same point (a collective). A rank that failed
// (error set) rethrows its error; when another rank failed, this one stops with an error
// naming `where`, instead of waiting for ever in its next collective.
void agree(Run& r, std::exception_ptr error, const char* where) {
  if (r.world > 1 && r.comm->any(error != nullptr) && !error)
    throw Error(str("data parallel: another rank failed ", where, " (its own error says why); "
                    "rank ", r.rank, " stops too"));
  if (error) std::rethrow_exception(error);
}

// ZeRO-1: rank 0's optimizer gets the whole state from the owners (a collective), so that it
// can write the checkpoint; reshard() drops the others' shares again. Rank 0 alone holds the
// unsharded state meanwhile; the other ranks keep their own.
void gather_state(Run& r) {
  if (r.lead) r.opt->set_owned(std::vector<bool>(r.params.size(), true));
  std::vector<Tensor> tensors;
  std::vector<int64_t> from;
  for (size_t i = 0; i < r.params.size(); ++i) {
    const bool here = r.lead || r.owners[i] == r.rank;
    const std::vector<Tensor> state = here ? r.opt->state_of(i) : std::vector<Tensor>(3);
    for (const Tensor& t : state) {
      tensors.push_back(t);
      from.push_back(r.owners[i]);
    }
  }
  r.comm->gather_to_lead(tensors, from);
}
void reshard(Run& r) {
  std::vector<bool> owned;
  for (int64_t o : r.owners) owned.push_back(o == r.rank);
  r.opt->set_owned(owned);
}

void save(Run& r) {
  r.saved_step = r.state.step;
  if (!r.owners.empty()) gather_state(r);
  std::exception_ptr error;
  if (r.lead) {  // rank 0 writes; the others hold the same weights
    try {
      r.state.data_offset = r.data_gen.offset();
      r.state.dropout_offset = default_generator().offset();
      r.state.elapsed_seconds = r.elapsed_before + r.elapsed();
      save_checkpoint(r.options.out_dir, r.cfg, *r.tokenizer, *r.opt, r.state);
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (!r.owners.empty()) reshard(r);
  agree(r, error, "writing the checkpoint");
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
        << " tok/s"
        << (r.world > 1 ? str(" on ", r.world, " GPUs, ",
                              format_count(double(r.tokens_per_step) * double(r.steps_timed) /
                                           r.step_seconds / double(r.world)),
                              " per GPU")
                        : std::string())
        << ") | loss " << fixed(r.result.first_loss, 4) << " -> "
        << fixed(r.result.last_loss, 4);
  if (!std::isnan(r.state.best_val_loss))
    out << " | best val loss " << fixed(r.state.best_val_loss, 4) << " at step "
        << r.state.best_val_step;
  out << "\n";
  out << "peak memory: " << format_bytes(mem.peak_allocated) << " allocated on " << r.device.str();
  if (r.device.is_cuda()) out << " (" << format_bytes(mem.peak_reserved) << " reserved)";
  out << "\n";
  if (!r.owners.empty()) {
    // Every rank's share, gathered to rank 0: the largest is what ZeRO-1 leaves on a GPU.
    std::vector<double> shares(size_t(r.world), 0.0);
    const double mine = double(r.opt->state_bytes());
    double largest = 0;
    for (int64_t k = 0; k < r.world; ++k) {
      const double s = r.comm->all_reduce_sum(k == r.rank ? mine : 0.0);
      largest = std::max(largest, s);
    }
    out << "optimizer state (ZeRO-1): " << format_bytes(size_t(largest)) << " on the fullest GPU, "
        << format_bytes(size_t(mine)) << " on rank " << r.rank << ", against "
        << format_bytes(r.opt->whole_state_bytes()) << " unsharded ("
        << fixed(100.0 * largest / double(std::max<size_t>(1, r.opt->whole_state_bytes())), 1)
        << "%)\n";
  }
  if (has_checkpoint(r.options.out_dir))
    out << "checkpoint: " << r.options.out_dir << " (step " << r.state.step << ")\n";
}

// A sample from the trained model, printed token by token as it is drawn, without moving the
// training run's random stream. Ctrl-C ends it early and marks the run interrupted.
void print_sample(Run& r) {
  DefaultGeneratorGuard keep_rng;
  SampleOptions so;
  so.max_new_tokens = r.cfg.sample_tokens;
  so.temperature = 0.8;
  so.top_k = 40;
  so.seed = r.cfg.seed;
  so.stop = [] { return stop_requested(); };
  const std::vector<int32_t> prompt = default_prompt(*r.tokenizer);
  r.result.sample = r.tokenizer->decode(prompt);
  r.out << "--- sample (" << so.max_new_tokens << " tokens, temperature " << so.temperature
        << ", top-k " << so.top_k << ") ---" << r.result.sample << std::flush;
  const std::vector<int32_t> ids = generate(*r.model, prompt, so, [&](int32_t t) {
    const std::string piece = r.tokenizer->decode({t});
    r.result.sample += piece;
    r.out << piece << std::flush;
  });
  if (interrupted(r)) {
    r.out << "\n--- sample stopped by Ctrl-C after " << ids.size() << " tokens; "
          << checkpoint_status(r) << " ---\n";
    return;
  }
  r.out << "\n---\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// the loop

namespace {

// The steps, the evaluations and checkpoints, and the report, once the run is set up.
void run_steps(Run& run) {
  start_clock(run);
  while (run.state.step < run.end_step && !interrupted_everywhere(run)) {
    const StepStats step = train_step(run);
    print_progress(run, step);
    if (evaluation_due(run)) {
      const Losses losses = evaluate_splits(run);
      // Ctrl-C during evaluation: the last checkpoint stays.
      if (interrupted_everywhere(run)) break;
      checkpoint_evaluation(run, losses);
    } else if (run.state.step == run.options.stop_at) {
      checkpoint_at_stop(run);
    }
  }
  stop_clock(run);

  if (run.result.interrupted) {
    print_interrupted(run);
    return;
  }
  print_summary(run);
  if (run.cfg.sample_tokens > 0 && run.state.step >= run.cfg.steps && run.lead) print_sample(run);
  run.out.flush();
}

// An allocation failure with what the run holds and what to lower.
Error out_of_memory(const Run& r, const std::string& what) {
  return Error(str("out of memory on ", r.device.str(), " at step ", r.state.step + 1, " (",
                   what, "); this run has ",
                   r.model ? format_count(double(r.model->num_parameters())) : std::string("?"),
                   " parameters and micro-batches of ", r.cfg.batch_size, " x ",
                   r.cfg.block_size, " tokens: ", kLowerSizes, "; ", checkpoint_status(r)));
}

}  // namespace

TrainResult train(TrainConfig config, const RunOptions& options) {
  Run run(std::move(config), options);
  std::unique_ptr<Checkpoint> ckpt;
  std::exception_ptr setup_error;  // data parallel: the ranks fail their set-up together
  try {
    ckpt = check_settings(run);
    load_data(run, ckpt.get());
    check_memory(run);
    // A fresh run: its directory is created (by rank 0) only once every check has passed.
    if (run.lead && !run.lock) {
      lock_out_dir(run);
      check_fresh_out_dir(run, /*locked=*/true);
    }
  } catch (...) {
    setup_error = std::current_exception();
  }
  agree(run, setup_error, "its set-up");
  try {
    build_model(run, std::move(ckpt));
    print_header(run);
    run_steps(run);
  } catch (const OutOfMemoryError& e) {
    throw out_of_memory(run, e.what());
  } catch (const std::bad_alloc&) {
    throw out_of_memory(run, "the host allocator failed (std::bad_alloc)");
  }
  return run.result;
}

}  // namespace fg::train
