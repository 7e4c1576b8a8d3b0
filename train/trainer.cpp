// The training loop (see train/trainer.h).
#include "train/trainer.h"

#include <atomic>
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
// the loop

TrainResult train(TrainConfig cfg, const RunOptions& run) {
  std::ostream& out = run.out ? *run.out : std::cout;
  using clock = std::chrono::steady_clock;

  // ---- settings and checkpoint: everything is checked before anything is written ----
  std::unique_ptr<Checkpoint> ckpt;
  if (run.resume) {
    ckpt = std::make_unique<Checkpoint>(load_checkpoint(run.out_dir, true));
    cfg = resume_config(ckpt->config, cfg, run.explicit_keys, run.out_dir);
  } else if (has_checkpoint(run.out_dir) && !run.overwrite) {
    throw Error(str("'", run.out_dir, "' already holds a checkpoint; pass --resume to continue "
                    "it, --overwrite to replace it, or --out DIR to train elsewhere"));
  }
  cfg.validate();
  {
    std::error_code ec;
    FG_CHECK(!std::filesystem::exists(run.out_dir, ec) || std::filesystem::is_directory(run.out_dir, ec),
             "--out '", run.out_dir, "' exists and is not a directory");
  }
  const Device device = device_from_string(cfg.device);
  const bool bf16 = cfg.dtype == "bf16";

  // ---- data ----
  std::string note;
  const std::string data_path = cfg.data.empty() ? default_corpus(&note) : cfg.data;
  if (!note.empty()) out << note << "\n";
  const std::string text = read_file(data_path, "data file");
  FG_CHECK(!text.empty(), "data file '", data_path, "' is empty; give a text file with some content");
  std::unique_ptr<Tokenizer> tokenizer =
      ckpt ? std::move(ckpt->tokenizer) : Tokenizer::create(cfg.tokenizer, text);
  std::vector<int32_t> tokens;
  try {
    tokens = tokenizer->encode(text);
  } catch (const Error& e) {
    throw Error(str("data file '", data_path, "': ", e.what()));
  }
  const TextSplits splits = split_tokens(tokens, cfg.block_size, cfg.val_fraction, data_path);

  // ---- model and optimizer ----
  const nn::GPTConfig mc = cfg.model_config(tokenizer->vocab_size());
  auto model = std::make_shared<nn::GPT>(mc);
  if (ckpt) model->load_state_dict(ckpt->weights);
  model->to(device);
  // Mixed precision: the model computes in bf16; AdamW keeps fp32 master weights, which start
  // from the exact fp32 values (the initialisation, or the checkpoint's weights below).
  std::map<std::string, Tensor> fp32_init;
  if (bf16) {
    for (auto& [name, p] : model->named_parameters()) fp32_init[name] = ops::clone(p);
    model->to(DType::bf16);
  }
  model->train();
  AdamW opt(model->named_parameters(), AdamWOptions()
                                           .lr(cfg.lr)
                                           .betas(cfg.beta1, cfg.beta2)
                                           .eps(cfg.eps)
                                           .weight_decay(cfg.weight_decay));
  TrainState st;
  st.data_seed = cfg.seed * 0x9E3779B97F4A7C15ull + 1;
  st.dropout_seed = cfg.seed * 0x9E3779B97F4A7C15ull + 2;
  if (bf16 && !ckpt) opt.load_fp32_weights(fp32_init);
  fp32_init.clear();
  if (ckpt) {
    st = ckpt->state;
    opt.load_state(ckpt->optimizer, st.step, &ckpt->weights);
    ckpt.reset();  // free the host copies
  }
  Generator data_gen(st.data_seed);
  data_gen.set_offset(st.data_offset);
  default_generator().manual_seed(st.dropout_seed);
  default_generator().set_offset(st.dropout_offset);
  const std::vector<Tensor> params = model->parameters();
  const LRSchedule sched{cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps};
  const int64_t tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum;

  // ---- header ----
  out << "flashgrad train: preset " << cfg.preset << " | " << format_count(double(model->num_parameters()))
      << " parameters | " << cfg.n_layer << " layers, " << cfg.n_head << " heads"
      << (mc.kv_heads() != cfg.n_head ? " (" + std::to_string(mc.kv_heads()) + " kv)" : "")
      << ", width " << cfg.n_embd << ", context " << cfg.block_size << " | " << device.str() << " "
      << cfg.dtype << " | attention " << cfg.attn << "\n";
  out << "data: " << data_path << ": " << format_count(double(tokens.size())) << " tokens, "
      << tokenizer->type() << " vocabulary of " << tokenizer->vocab_size() << " | train "
      << format_count(double(splits.train.size())) << ", val " << format_count(double(splits.val.size()))
      << "\n";
  out << "optimisation: batch " << cfg.batch_size << " x " << cfg.block_size << " tokens x "
      << cfg.grad_accum << " accumulation | " << cfg.steps << " steps | lr " << sci(cfg.lr) << " -> "
      << sci(cfg.min_lr) << ", warm-up " << cfg.warmup << " | AdamW betas (" << cfg.beta1 << ", "
      << cfg.beta2 << "), weight decay " << cfg.weight_decay << ", clip " << cfg.grad_clip
      << " | dropout " << cfg.dropout << "\n";
  if (run.resume)
    out << "resuming " << run.out_dir << " at step " << st.step
        << (std::isnan(st.best_val_loss) ? std::string()
                                         : " (best val loss " + fixed(st.best_val_loss, 4) + ")")
        << "\n";
  out.flush();

  TrainResult res;
  res.start_step = st.step;
  res.best_val_loss = st.best_val_loss;
  reset_peak_memory(device);
  const auto t0 = clock::now();
  double last_save_elapsed = st.elapsed_seconds;
  auto elapsed_now = [&] {
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  auto save = [&] {
    st.data_offset = data_gen.offset();
    st.dropout_offset = default_generator().offset();
    st.elapsed_seconds = last_save_elapsed + elapsed_now();
    save_checkpoint(run.out_dir, cfg, *tokenizer, opt, st);
  };
  auto clear_line = [&] {
    if (run.live) out << "\r\033[K";
  };

  const int64_t end_step = run.stop_at > 0 ? std::min(run.stop_at, cfg.steps) : cfg.steps;
  if (st.step >= cfg.steps)
    out << "the checkpoint is already at step " << st.step << " of " << cfg.steps
        << "; pass a larger --steps to train further\n";
  double step_time_sum = 0;
  int64_t steps_timed = 0;
  bool saved_at_end = false;

  while (st.step < end_step) {
    if (stop_requested()) {
      res.interrupted = true;
      break;
    }
    const auto ts = clock::now();
    const double lr = sched.at(st.step);
    opt.set_lr(lr);
    double loss_sum = 0;
    for (int64_t micro = 0; micro < cfg.grad_accum; ++micro) {
      Batch b = get_batch(splits.train, cfg.batch_size, cfg.block_size, data_gen, device);
      Tensor loss = model->loss(b.x, b.y);
      loss_sum += loss.item();
      (cfg.grad_accum > 1 ? loss * (1.0 / double(cfg.grad_accum)) : loss).backward();
    }
    const double loss = loss_sum / double(cfg.grad_accum);
    const double norm = grad_norm(params);
    FG_CHECK(std::isfinite(loss) && std::isfinite(norm), "training diverged at step ", st.step + 1,
             ": loss ", loss, ", gradient norm ", norm,
             "; the last checkpoint is untouched; try a lower --lr or --dtype fp32");
    opt.step(clip_coefficient(norm, cfg.grad_clip));
    opt.zero_grad();
    st.step++;
    if (std::isnan(res.first_loss)) res.first_loss = loss;
    res.last_loss = loss;
    synchronize(device);
    step_time_sum += std::chrono::duration<double>(clock::now() - ts).count();
    steps_timed++;

    // ---- progress ----
    const double per_step = step_time_sum / double(steps_timed);
    const double tok_s = double(tokens_per_step) / per_step;
    if (run.live || st.step % cfg.log_interval == 0 || st.step == res.start_step + 1) {
      const double eta = elapsed_now() / double(st.step - res.start_step) * double(end_step - st.step);
      clear_line();
      out << "step " << std::setw(int(std::to_string(cfg.steps).size())) << st.step << "/"
          << cfg.steps << " | loss " << fixed(loss, 4) << " | lr " << sci(lr) << " | "
          << format_count(tok_s) << " tok/s | ETA " << format_duration(eta);
      if (!run.live) out << "\n";
      out.flush();
    }

    // ---- evaluation and checkpoint ----
    const bool at_end = st.step == cfg.steps;
    if (st.step % cfg.eval_interval == 0 || at_end) {
      const uint64_t eval_seed = cfg.seed + 7;
      double train_loss = evaluate(*model, splits.train, cfg.batch_size, cfg.eval_batches, eval_seed);
      double val_loss = evaluate(*model, splits.val, cfg.batch_size, cfg.eval_batches, eval_seed);
      if (stop_requested()) {
        res.interrupted = true;
        break;
      }
      const bool best = std::isnan(st.best_val_loss) || val_loss < st.best_val_loss;
      if (best) {
        st.best_val_loss = val_loss;
        st.best_val_step = st.step;
      }
      res.best_val_loss = st.best_val_loss;
      save();
      saved_at_end = at_end;
      clear_line();
      out << "eval step " << st.step << ": train loss " << fixed(train_loss, 4) << " | val loss "
          << fixed(val_loss, 4) << (best ? " (best)" : "") << " | checkpoint saved\n";
      out.flush();
    } else if (st.step == run.stop_at) {
      save();
      clear_line();
      out << "stopped at step " << st.step << " (--stop-at); checkpoint saved\n";
    }
  }
  if (run.live) out << "\n";
  res.end_step = st.step;
  res.seconds = elapsed_now();
  (void)saved_at_end;

  if (res.interrupted) {
    out << "interrupted at step " << st.step << "; the last checkpoint in " << run.out_dir
        << (has_checkpoint(run.out_dir) ? " is intact" : " (none yet)") << "\n";
    out.flush();
    return res;
  }

  // ---- summary ----
  const MemoryStats mem = memory_stats(device);
  const int64_t steps_run = res.end_step - res.start_step;
  out << "done: " << steps_run << " steps in " << format_duration(res.seconds);
  if (steps_run > 0)
    out << " (" << format_count(double(tokens_per_step) * double(steps_timed) / step_time_sum)
        << " tok/s) | loss " << fixed(res.first_loss, 4) << " -> " << fixed(res.last_loss, 4);
  if (!std::isnan(st.best_val_loss))
    out << " | best val loss " << fixed(st.best_val_loss, 4) << " at step " << st.best_val_step;
  out << "\n";
  out << "peak memory: " << format_bytes(mem.peak_allocated) << " allocated on " << device.str();
  if (device.is_cuda()) out << " (" << format_bytes(mem.peak_reserved) << " reserved)";
  out << "\n";
  if (has_checkpoint(run.out_dir)) out << "checkpoint: " << run.out_dir << " (step " << st.step << ")\n";

  if (cfg.sample_tokens > 0 && st.step >= cfg.steps) {
    DefaultGeneratorGuard keep_rng;
    SampleOptions so;
    so.max_new_tokens = cfg.sample_tokens;
    so.temperature = 0.8;
    so.top_k = 40;
    so.seed = cfg.seed;
    std::vector<int32_t> prompt = default_prompt(*tokenizer);
    std::vector<int32_t> ids = generate(*model, prompt, so);
    res.sample = tokenizer->decode(prompt) + tokenizer->decode(ids);
    out << "--- sample (" << so.max_new_tokens << " tokens, temperature " << so.temperature
        << ", top-k " << so.top_k << ") ---" << res.sample << "\n---\n";
  }
  out.flush();
  return res;
}

}  // namespace fg::train
