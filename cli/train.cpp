// `flashgrad train`: every TrainConfig setting as a flag, on top of a preset.
//
//   flashgrad train                                 # preset tiny on data/fortunes.txt
//   flashgrad train --preset small --device cuda --dtype bf16
//   flashgrad train --data input.txt --steps 1000 --lr 1e-3 --out out/mine
//   flashgrad train --out out/mine --resume --steps 2000
//
// A flag given on the command line wins over the preset (and, on --resume, over the
// checkpoint, except for the architecture, which must match). Every numeric flag is checked
// against its range (train::setting_range) while the command line is parsed.
//
// Without --out, a run goes to out/<preset>, or, when that already holds a run, to the first
// free out/<preset>-2, out/<preset>-3, ...: running the same command again trains a new model
// beside the earlier ones instead of failing. --resume without --out continues the latest of
// them, and --overwrite without --out replaces out/<preset>.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "train/checkpoint.h"
#include "train/comm.h"
#include "train/launch.h"
#include "train/trainer.h"

namespace fg::cli {

namespace {

struct TrainFlags {
  train::TrainConfig parsed;  // the flag values (defaults: the tiny preset)
  std::vector<std::pair<CLI::Option*, std::string>> keyed;  // flag -> config key
  CLI::Option* preset_option = nullptr;
  std::string preset = "tiny";
  std::string out;
  bool resume = false, overwrite = false;
  int64_t stop_at = 0;
  int64_t gpus = 1;  // data-parallel workers (train/launch.h); 1: this process alone
  int64_t bucket_mb = 25;  // data parallel: gradient bucket size (RunOptions::bucket_bytes)
  std::string reduce_dtype = "auto";  // data parallel: Communicator::set_reduce_dtype
  int64_t zero = 0;                   // data parallel: ZeRO stage (RunOptions::zero)
  int64_t hang_timeout = 600;         // data parallel: the launcher's hang watchdog, seconds
};

// A flag bound to the config key `key`, checked against the key's range when it has one.
template <typename T>
CLI::Option* add(CLI::App* cmd, TrainFlags& f, const std::string& flag, const std::string& key,
                 T& field, const std::string& help) {
  CLI::Option* o = cmd->add_option(flag, field, help)->capture_default_str();
  if (const train::NumberRange* range = train::setting_range(key)) o->transform(in_range(*range));
  f.keyed.emplace_back(o, key);
  return o;
}

// Whether `dir` holds anything but the lock file a finished run leaves.
bool holds_a_run(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return false;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().filename() != ".lock") return true;
  return !std::filesystem::is_directory(dir, ec);
}

// The --out of a run that names none (see the top of this file).
std::string default_out_dir(const TrainFlags& f) {
  const std::string base = "out/" + f.preset;
  auto numbered = [&](int k) { return k == 1 ? base : base + "-" + std::to_string(k); };
  if (f.overwrite) return base;
  int k = 1;
  if (f.resume) {
    std::string latest;
    for (; holds_a_run(numbered(k)); ++k)
      if (train::has_checkpoint(numbered(k))) latest = numbered(k);
    FG_CHECK(!latest.empty(), "--resume: there is no checkpoint in ", base, " to continue; train "
             "one first (flashgrad train), or name its directory with --out");
    return latest;
  }
  while (holds_a_run(numbered(k))) ++k;
  if (k > 1)
    std::cout << "checkpoints go to " << numbered(k) << " ("
              << (k > 2 ? base + " to " + numbered(k - 1) + " hold earlier runs"
                        : base + " holds an earlier run")
              << "; --out DIR to choose, --resume to continue the latest)\n";
  return numbered(k);
}

void run_train(TrainFlags& f) {
  // The preset first, then the flags given on the command line.
  train::TrainConfig cfg = train::preset(f.preset);
  nlohmann::json merged = train::to_json(cfg), given = train::to_json(f.parsed);
  std::set<std::string> explicit_keys;
  if (f.preset_option->count() > 0)
    for (const std::string& k : train::preset_keys()) explicit_keys.insert(k);
  for (auto& [opt, key] : f.keyed) {
    if (opt->count() == 0) continue;
    merged[key] = given[key];
    explicit_keys.insert(key);
  }
  train::update_from_json(cfg, merged);

  train::RunOptions run;
  const bool worker = train::launched_worker();
  const train::DistEnv env = train::dist_env_from([](const char* n) { return std::getenv(n); });
  // Under torchrun or Slurm every rank picks its --out alone: they must be told the same one.
  FG_CHECK(env.world == 1 || worker || !f.out.empty(), "data parallel (", env.world,
           " processes from ", env.source, "): give --out DIR, the same on every rank");
  run.out_dir = f.out.empty() ? default_out_dir(f) : f.out;
  // `--gpus N` (N > 1) in the process the user started: the N workers, with the resolved --out
  // appended (each worker would otherwise pick its own out/<preset>-k), and their exit code.
  if (f.gpus > 1 && !worker)
    return launch_workers("train", f.gpus, cfg.device, {"--out", run.out_dir},
                          double(f.hang_timeout));
  run.resume = f.resume;
  run.overwrite = f.overwrite;
  run.stop_at = f.stop_at;
  run.explicit_keys = explicit_keys;
  run.live = ::isatty(STDOUT_FILENO) != 0;
  run.bucket_bytes = f.bucket_mb << 20;
  run.zero = f.zero;

  // A data-parallel worker: started by --gpus, torchrun or Slurm (train/dist_env.h).
  FG_CHECK(f.gpus == 1 || env.world == f.gpus, "--gpus ", f.gpus, " but this worker's world "
           "has ", env.world, " process(es) (", env.source, ")");
  // Ctrl-C from here on stops after the current step (every rank at the same one), also when
  // it comes while the ranks are still meeting.
  train::SigintGuard ctrl_c;
  std::unique_ptr<train::Communicator> comm;
  if (env.world > 1) {
    FG_CHECK(cfg.device != "cpu", "data parallel (", env.world, " processes) trains on GPUs; "
             "drop --device cpu");
    comm = train::Communicator::create(env);
    if (f.reduce_dtype != "auto")
      comm->set_reduce_dtype(f.reduce_dtype == "bf16" ? DType::bf16 : DType::f32);
    run.comm = comm.get();
    if (!comm->lead()) run.live = false;
  }
  train::TrainResult r = train::train(cfg, run);
  if (r.interrupted) throw Exit{130};
}

}  // namespace

void register_train(CLI::App& app) {
  auto flags = std::make_shared<TrainFlags>();
  TrainFlags& f = *flags;
  train::TrainConfig& c = f.parsed;
  CLI::App* cmd = app.add_subcommand("train", "train a small GPT on a text file");
  cmd->footer(
      "Presets: tiny (default; 2 layers, width 128, a few minutes on 2 CPU cores) and small "
      "(6 layers, 6 heads, width 384, context 256, dropout 0.2, 5000 steps). Flags override "
      "the preset. The data defaults to data/fortunes.txt, built from the fortunes package on "
      "first use. Ctrl-C stops after the current step (or ends the final sample) and keeps the "
      "last checkpoint; the exit code is then 130. --resume keeps the learning-rate schedule the "
      "run started with: a larger --steps trains the extra steps at --min-lr "
      "(--lr-decay-steps N stretches the cosine instead), and --stop-at pauses a run so that "
      "--resume continues it exactly.");

  f.preset_option = cmd->add_option("--preset", f.preset, "settings to start from")
                        ->check(CLI::IsMember(train::preset_names()))
                        ->capture_default_str();
  cmd->add_option("--out", f.out, "checkpoint directory (default: out/<preset>, or out/<preset>-2, "
                  "-3, ... when that holds a run)")
      ->check(non_empty("--out", "a directory"));
  cmd->add_flag("--resume", f.resume, "continue the checkpoint in --out (default: the latest "
                "out/<preset>*) exactly where it stopped");
  cmd->add_flag("--overwrite", f.overwrite, "replace a checkpoint already in --out");
  cmd->add_option("--gpus", f.gpus,
                  "data parallel: one worker process per GPU, gradients averaged over NCCL "
                  "(batch is per GPU)")
      ->transform(in_range(train::NumberRange::whole("--gpus", 1, 1024)));
  cmd->add_option("--bucket-mb", f.bucket_mb,
                  "data parallel: average gradients in buckets of this many MiB while the "
                  "backward runs (0: once, after it)")
      ->transform(in_range(train::NumberRange::whole("--bucket-mb", 0, 4096)));
  cmd->add_option("--reduce-dtype", f.reduce_dtype,
                  "data parallel: the dtype gradients are averaged in: auto (their own: the "
                  "--dtype trained in), fp32 (bf16 gradients summed without rounding at each "
                  "hop) or bf16 (half the bytes of fp32 gradients)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--hang-timeout", f.hang_timeout,
                  "data parallel (--gpus): stop every worker when one has made no progress for "
                  "this many seconds while the others wait for it (0: never)")
      ->transform(in_range(train::NumberRange::whole("--hang-timeout", 0, 86400)))
      ->capture_default_str();
  cmd->add_option("--zero", f.zero,
                  "data parallel: 1 shards AdamW's moments and master weights over the GPUs "
                  "(ZeRO stage 1, whole parameters per GPU); 0 keeps them whole on every GPU")
      ->transform(in_range(train::NumberRange::whole("--zero", 0, 1)))
      ->capture_default_str();
  cmd->add_option("--stop-at", f.stop_at,
                  "stop after this step with a checkpoint, as if paused (resume later with the "
                  "same --steps: the run continues exactly as if never stopped)")
      ->transform(in_range(train::NumberRange::whole("--stop-at", 0, 1000000000)));

  const std::string g_model = "Model", g_data = "Data", g_opt = "Optimisation",
                    g_eval = "Evaluation and logging", g_sys = "System";
  add(cmd, f, "--n-layer", "n_layer", c.n_layer, "transformer blocks")->group(g_model);
  add(cmd, f, "--n-head", "n_head", c.n_head, "attention heads")->group(g_model);
  add(cmd, f, "--n-kv-head", "n_kv_head", c.n_kv_head,
      "key/value heads (GQA; 0 = n_head, 1 = MQA)")->group(g_model);
  add(cmd, f, "--n-embd", "n_embd", c.n_embd, "model width")->group(g_model);
  add(cmd, f, "--block-size", "block_size", c.block_size, "context length in tokens")->group(g_model);
  add(cmd, f, "--dropout", "dropout", c.dropout, "dropout probability")->group(g_model);
  f.keyed.emplace_back(
      cmd->add_flag_callback("--no-bias", [&c] { c.bias = false; },
                             "no biases in Linear and LayerNorm layers")->group(g_model),
      "bias");
  add(cmd, f, "--attn", "attn", c.attn, "attention implementation")
      ->check(CLI::IsMember({"flash", "naive"}))->group(g_model);

  add(cmd, f, "--data", "data", c.data, "training text (default: data/fortunes.txt)")
      ->check(non_empty("--data", "a text file (leave it out for the default corpus)"))
      ->group(g_data);
  add(cmd, f, "--tokenizer", "tokenizer", c.tokenizer, "char (vocabulary from the text) or byte")
      ->check(CLI::IsMember({"char", "byte"}))->group(g_data);
  add(cmd, f, "--val-fraction", "val_fraction", c.val_fraction, "validation share of the text")
      ->group(g_data);

  add(cmd, f, "--batch-size", "batch_size", c.batch_size, "sequences per micro-batch")->group(g_opt);
  add(cmd, f, "--grad-accum", "grad_accum", c.grad_accum, "micro-batches per step")->group(g_opt);
  add(cmd, f, "--steps", "steps", c.steps, "optimizer steps in all")->group(g_opt);
  add(cmd, f, "--lr-decay-steps", "lr_decay_steps", c.lr_decay_steps,
      "steps of the warm-up + cosine schedule (0 = --steps; --resume keeps the checkpoint's, "
      "so a larger --steps trains on at --min-lr)")->group(g_opt);
  add(cmd, f, "--warmup", "warmup", c.warmup, "linear warm-up steps")->group(g_opt);
  add(cmd, f, "--lr", "lr", c.lr, "peak learning rate")->group(g_opt);
  add(cmd, f, "--min-lr", "min_lr", c.min_lr, "learning rate at the end of the cosine")->group(g_opt);
  add(cmd, f, "--weight-decay", "weight_decay", c.weight_decay, "AdamW weight decay (2-D params)")
      ->group(g_opt);
  add(cmd, f, "--beta1", "beta1", c.beta1, "AdamW beta1")->group(g_opt);
  add(cmd, f, "--beta2", "beta2", c.beta2, "AdamW beta2")->group(g_opt);
  add(cmd, f, "--eps", "eps", c.eps, "AdamW epsilon")->group(g_opt);
  add(cmd, f, "--grad-clip", "grad_clip", c.grad_clip, "clip the gradient norm to this (0 = off)")
      ->group(g_opt);

  add(cmd, f, "--eval-interval", "eval_interval", c.eval_interval,
      "evaluate and save a checkpoint every this many steps")->group(g_eval);
  add(cmd, f, "--eval-batches", "eval_batches", c.eval_batches, "batches per evaluation")->group(g_eval);
  add(cmd, f, "--log-interval", "log_interval", c.log_interval,
      "steps between progress lines (when not on a terminal)")->group(g_eval);
  add(cmd, f, "--sample-tokens", "sample_tokens", c.sample_tokens,
      "tokens to sample after training (0 = none)")->group(g_eval);

  add(cmd, f, "--device", "device", c.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "cuda:0"}))->group(g_sys);
  add(cmd, f, "--dtype", "dtype", c.dtype, "fp32, or bf16 (with fp32 master weights)")
      ->check(CLI::IsMember({"fp32", "bf16"}))->group(g_sys);
  add(cmd, f, "--seed", "seed", c.seed, "seed of the initialisation, batches and dropout")
      ->group(g_sys);

  cmd->callback([flags] { run_train(*flags); });
}

}  // namespace fg::cli
