// `flashgrad bench train`: the speed of a GPT training step, and where its time goes.
//
//   flashgrad bench train --preset gpt12                 # 12 layers, width 768, context 1024, B 16
//   flashgrad bench train --preset small --device cpu --dtype fp32 --steps 5
//
// A step is the one `flashgrad train` runs: a random batch of token ids (uploaded as train's
// batches are), forward with the loss, backward, the global gradient norm, AdamW with clipping
// at 1.0, gradients dropped; the loss is read on the host every step. Weights are random: speed
// does not depend on training. After --warmup untimed steps, --steps steps are timed back to
// back with a device synchronisation at the end: ms/step and tokens/s.
//
// Model FLOP utilisation: (6 x parameters + 12 x layers x width x context) FLOPs per token
// (the matrix products of forward and backward, and attention's QK^T and PV counted without
// the causal saving, as PaLM's appendix B and nanoGPT count), times tokens/s, over the device's
// dense bf16 peak (989 TFLOP/s for an H100 or H200 SXM; --peak-tflops for other devices).
//
// Where the time goes: a second run of max(3, steps / 4) steps with tensor/phase_timer.h on,
// which times every matrix product and attention call with CUDA events around its kernels
// (the clock on the CPU); their sums over that run's wall time are the shares, and the rest is
// everything else (elementwise, normalisation, reductions, the optimizer, launch gaps).
// Peak memory is the allocator's peak over the whole command.
//
// --gpus N (N > 1): data parallel, as `flashgrad train --gpus N` runs it: N worker processes,
// one per GPU, each with its own random batches of --batch-size sequences, the gradients
// averaged over NCCL in one grouped all-reduce after each backward (train's --bucket-mb 0).
// Rank 0 prints; tokens/s counts the tokens of every GPU, and per GPU too.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "nn/gpt.h"
#include "tensor/phase_timer.h"
#include "train/comm.h"
#include "train/dist_env.h"
#include "train/fileio.h"
#include "train/launch.h"
#include "train/optim.h"

#ifdef FLASHGRAD_WITH_CUDA
#include "core/cuda_device.h"
#endif

namespace fg::cli {

namespace {

struct TrainBenchFlags {
  std::string preset = "gpt12", device = "auto", dtype = "auto", json;
  int64_t n_layer = 0, n_head = 0, n_embd = 0, block_size = 0, batch = 0, vocab = 96;
  double dropout = -1, peak_tflops = 0;
  int64_t steps = 20, warmup = 5;
  int64_t gpus = 1;  // data parallel: workers, one per GPU
};

struct Preset {
  const char* name;
  int64_t n_layer, n_head, n_embd, block_size, batch;
  double dropout;
};
// The presets of bench/compare_train.py (tiny and small are also `flashgrad train`'s).
constexpr Preset kPresets[] = {{"tiny", 2, 4, 128, 64, 16, 0.0},
                               {"small", 6, 6, 384, 256, 64, 0.2},
                               {"gpt12", 12, 12, 768, 1024, 16, 0.1},
                               {"gpt24", 24, 16, 1024, 1024, 8, 0.1}};

double device_peak_tflops(Device d, double flag) {
  if (flag > 0) return flag;
#ifdef FLASHGRAD_WITH_CUDA
  if (d.is_cuda()) {
    const std::string& name = cuda_device_info(d.index).name;
    if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos)
      return 989.4;
  }
#endif
  return 0;  // unknown: no utilisation figure
}

void run_bench_train(TrainBenchFlags f) {
  // Data parallel: the process the user started launches the workers and waits for them.
  if (f.gpus > 1 && !train::launched_worker())
    return launch_workers("bench train", f.gpus, f.device, {});
  const train::DistEnv env = train::dist_env_from([](const char* n) { return std::getenv(n); });
  std::unique_ptr<train::Communicator> comm;
  if (env.world > 1) comm = train::Communicator::create(env);
  const int64_t rank = comm ? comm->rank() : 0, world = comm ? comm->world() : 1;
  const bool lead = rank == 0;
  const Preset* p = nullptr;
  for (const Preset& q : kPresets)
    if (f.preset == q.name) p = &q;
  FG_CHECK(p, "bench train: unknown --preset '", f.preset, "'; use tiny, small, gpt12 or gpt24");
  auto pick = [](int64_t flag, int64_t preset) { return flag > 0 ? flag : preset; };
  const int64_t L = pick(f.n_layer, p->n_layer), H = pick(f.n_head, p->n_head);
  const int64_t C = pick(f.n_embd, p->n_embd), T = pick(f.block_size, p->block_size);
  const int64_t B = pick(f.batch, p->batch);
  const double dropout = f.dropout >= 0 ? f.dropout : p->dropout;
  FG_CHECK(f.steps >= 1 && f.warmup >= 0, "bench train: --steps must be >= 1 and --warmup >= 0");
  FG_CHECK(B >= 1, "bench train: --batch-size must be >= 1");
  const Device device = device_from_string(f.device);
  const DType dtype = f.dtype == "auto" ? (device.is_cuda() ? DType::bf16 : DType::f32)
                                        : dtype_from_string(f.dtype);
  FG_CHECK(dtype == DType::f32 || dtype == DType::bf16, "bench train: --dtype must be fp32 or "
           "bf16 (the dtypes `flashgrad train` trains in), got ", f.dtype);
  nn::GPTConfig config = nn::GPTConfig().vocab_size(f.vocab).block_size(T).n_layer(L).n_head(H)
                             .n_embd(C).dropout(dropout);
  config.validate();
  auto model = std::make_shared<nn::GPT>(config);
  model->to(device);
  std::map<std::string, Tensor> fp32;
  if (dtype == DType::bf16) {
    for (auto& [name, t] : model->named_parameters()) fp32[name] = ops::clone(t);
    model->to(DType::bf16);
  }
  model->train();
  train::AdamW opt(model->named_parameters(),
                   train::AdamWOptions().lr(3e-4).betas(0.9, 0.99).eps(1e-8).weight_decay(0.1));
  if (!fp32.empty()) opt.load_fp32_weights(fp32);
  fp32.clear();
  std::vector<Tensor> params;
  for (auto& [name, t] : model->named_parameters()) params.push_back(t);
  const int64_t nparams = model->num_parameters();
  if (lead) std::printf("flashgrad bench train on %s: %lld layers, %lld heads, width %lld, context %lld, "
              "batch %lld, vocab %lld, dropout %g, %s, %lld parameters\n",
              device.str().c_str(), (long long)L, (long long)H, (long long)C, (long long)T,
              (long long)B, (long long)f.vocab, dropout, dtype_name(dtype), (long long)nparams);
  std::fflush(stdout);

  Generator gen(7 + uint64_t(rank));  // each rank its own batches
  double last_loss = 0;
  auto step = [&] {
    std::vector<int64_t> x(size_t(B * T)), y(size_t(B * T));
    const uint64_t off = gen.next_offset();
    for (int64_t i = 0; i < B * T; ++i) {
      x[size_t(i)] = int64_t(gen.random_u64(off, 2 * uint64_t(i)) % uint64_t(f.vocab));
      y[size_t(i)] = int64_t(gen.random_u64(off, 2 * uint64_t(i) + 1) % uint64_t(f.vocab));
    }
    const TensorOptions ids = TensorOptions(DType::i64);
    Tensor xt = from_vector<int64_t>(x, {B, T}, ids).to(device);
    Tensor yt = from_vector<int64_t>(y, {B, T}, ids).to(device);
    Tensor loss = model->loss(xt, yt);
    last_loss = loss.item();
    loss.backward();
    if (comm) {  // the mean gradient over the GPUs, in one grouped all-reduce
      std::vector<Tensor> grads;
      for (const Tensor& t : params) grads.push_back(t.grad());
      comm->all_reduce_mean(grads);
    }
    const double norm = train::grad_norm(params);
    opt.step(train::clip_coefficient(norm, 1.0));
    opt.zero_grad();
  };
  using clock = std::chrono::steady_clock;
  auto run = [&](int64_t n) {
    synchronize(device);
    const auto t0 = clock::now();
    for (int64_t i = 0; i < n; ++i) step();
    synchronize(device);
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  run(f.warmup);
  const double seconds = run(f.steps);
  // Every GPU's tokens (each rank's steps take the same time: they meet at every all-reduce).
  const double ms = 1e3 * seconds / double(f.steps);
  const double tok_s = double(B * T * world) * double(f.steps) / seconds;
  // The split, from a separate instrumented run.
  const int64_t split_steps = std::max<int64_t>(3, f.steps / 4);
  take_phase_times();
  set_phase_timing(true);
  const double split_s = run(split_steps);
  set_phase_timing(false);
  const PhaseTimes pt = take_phase_times();
  const double split_ms = 1e3 * split_s;
  const double mm = pt.ms[int(Phase::matmul)] / split_ms, at = pt.ms[int(Phase::attention)] / split_ms;
  const double flops_per_token = 6.0 * double(nparams) + 12.0 * double(L * C * T);
  const double peak = device_peak_tflops(device, f.peak_tflops);
  const double mfu = peak > 0 ? flops_per_token * tok_s / double(world) / (peak * 1e12) : 0;
  const size_t peak_mem = memory_stats(device).peak_allocated;
  char mfu_text[32] = "n/a (unknown peak)";
  if (peak > 0) std::snprintf(mfu_text, sizeof mfu_text, "%.1f%%", 100 * mfu);
  if (!lead) return;
  if (world > 1)
    std::printf("  data parallel: %lld GPUs, batch %lld per GPU; tokens/s %.0f per GPU\n",
                (long long)world, (long long)B, tok_s / double(world));
  std::printf("  ms/step %.2f | tokens/s %.0f | MFU %s | peak memory %s | matmul %.1f%%, "
              "attention %.1f%%, other %.1f%% (%lld + %lld calls in %lld steps) | loss %.4f\n",
              ms, tok_s, mfu_text,
              format_bytes(peak_mem).c_str(), 100 * mm, 100 * at, 100 * (1 - mm - at),
              (long long)pt.calls[0], (long long)pt.calls[1], (long long)split_steps, last_loss);
  if (!f.json.empty()) {
    nlohmann::json j = {{"preset", f.preset}, {"device", device.str()}, {"dtype", dtype_name(dtype)},
                        {"n_layer", L}, {"n_head", H}, {"n_embd", C}, {"block_size", T},
                        {"batch", B}, {"vocab", f.vocab}, {"dropout", dropout},
                        {"parameters", nparams}, {"steps", f.steps}, {"ms_per_step", ms},
                        {"tokens_per_s", tok_s}, {"mfu", mfu}, {"peak_tflops", peak},
                        {"peak_memory_bytes", peak_mem}, {"matmul_share", mm},
                        {"attention_share", at}, {"other_share", 1 - mm - at},
                        {"last_loss", last_loss}, {"gpus", world}};
    train::write_file_atomic(f.json, j.dump(2) + "\n");
  }
}

}  // namespace

void register_bench_train(CLI::App& bench) {
  auto f = std::make_shared<TrainBenchFlags>();
  CLI::App* cmd = bench.add_subcommand(
      "train", "ms/step, tokens/s, model FLOP utilisation, peak memory and the time split of a "
               "GPT training step");
  cmd->add_option("--preset", f->preset, "tiny, small, gpt12 or gpt24 (the sizes below override it)")
      ->check(CLI::IsMember({"tiny", "small", "gpt12", "gpt24"}))->capture_default_str();
  cmd->add_option("--n-layer", f->n_layer, "layers");
  cmd->add_option("--n-head", f->n_head, "attention heads");
  cmd->add_option("--n-embd", f->n_embd, "width");
  cmd->add_option("--block-size", f->block_size, "context length");
  cmd->add_option("--batch-size", f->batch, "sequences per step");
  cmd->add_option("--dropout", f->dropout, "dropout probability");
  cmd->add_option("--vocab", f->vocab, "vocabulary size (random token ids)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 30))->capture_default_str();
  cmd->add_option("--device", f->device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "auto (bf16 on CUDA, fp32 on the CPU), bf16 or fp32")
      ->capture_default_str();
  cmd->add_option("--steps", f->steps, "timed steps")->capture_default_str();
  cmd->add_option("--warmup", f->warmup, "untimed steps first")->capture_default_str();
  cmd->add_option("--peak-tflops", f->peak_tflops, "the device's dense bf16 peak, for MFU");
  cmd->add_option("--json", f->json, "also write the results to this JSON file");
  cmd->add_option("--gpus", f->gpus,
                  "data parallel: one worker per GPU, gradients averaged over NCCL (batch is "
                  "per GPU; tokens/s counts every GPU)")
      ->transform(in_range(train::NumberRange::whole("--gpus", 1, 1024)))->capture_default_str();
  cmd->callback([f] { run_bench_train(*f); });
}

}  // namespace fg::cli
