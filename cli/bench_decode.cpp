// `flashgrad bench decode`: tokens/s of generation with the KV cache, at several batch sizes,
// for a GPT of a given architecture with random weights (speed does not depend on training).
//
//   flashgrad bench decode                                   # 12 layers, width 768, context 1024
//   flashgrad bench decode --device cpu --n-layer 2 --n-embd 128 --block-size 64 --batch 1,8
//
// Each batch size runs generate_batch (train/sample.h) as `flashgrad sample` does: B random
// prompts of --prompt-len tokens are prefilled, then --tokens new tokens are drawn greedily,
// one decode step per token for the whole batch, the host reading each step's logits (as a
// sampler must). A short untimed generation comes first. Decode tokens/s = B * steps / the
// steps' time; prefill tokens/s likewise for the prompts. --no-kv-cache measures the
// recomputing path instead, --no-cuda-graph the decode step launched kernel by kernel.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "nn/gpt.h"
#include "train/fileio.h"
#include "train/sample.h"

namespace fg::cli {

namespace {

struct DecodeFlags {
  std::string device = "auto", dtype = "bf16", json;
  int64_t n_layer = 12, n_head = 12, n_embd = 768, block_size = 1024, vocab = 50304;
  std::vector<int64_t> batches{1, 8, 64};
  int64_t prompt_len = 16, tokens = 1000;
  bool no_kv_cache = false, no_cuda_graph = false;
};

void run_bench_decode(const DecodeFlags& f) {
  const Device device = device_from_string(f.device);
  const DType dtype = dtype_from_string(f.dtype);
  nn::GPTConfig config = nn::GPTConfig()
                             .vocab_size(f.vocab)
                             .block_size(f.block_size)
                             .n_layer(f.n_layer)
                             .n_head(f.n_head)
                             .n_embd(f.n_embd);
  config.validate();
  for (int64_t B : f.batches)
    FG_CHECK(B >= 1 && B <= 65536, "bench decode: --batch sizes must be from 1 to 65536, got ", B);
  FG_CHECK(f.prompt_len >= 1 && f.prompt_len <= f.block_size, "bench decode: --prompt-len ",
           f.prompt_len, " must be from 1 to --block-size ", f.block_size);
  nn::GPT model(config);
  model.to(device);
  model.to(dtype);
  model.eval();
  std::printf("flashgrad bench decode on %s: %lld layers, width %lld, %lld heads, context %lld, "
              "vocab %lld, %s, %lld parameters; prompts of %lld tokens, %lld new tokens, greedy, "
              "KV cache %s, CUDA graph %s\n",
              device.str().c_str(), (long long)f.n_layer, (long long)f.n_embd, (long long)f.n_head,
              (long long)f.block_size, (long long)f.vocab, dtype_name(dtype),
              (long long)model.num_parameters(), (long long)f.prompt_len, (long long)f.tokens,
              f.no_kv_cache ? "off" : "on",
              f.no_kv_cache || !device.is_cuda() ? "n/a" : f.no_cuda_graph ? "off" : "on");
  std::printf("  batch | prefill tok/s | decode tok/s | ms per step | window restarts\n");
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(7);
  for (int64_t B : f.batches) {
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < f.prompt_len; ++t)
        prompts[size_t(b)].push_back(int32_t(gen.random_u64(uint64_t(b), uint64_t(t)) % uint64_t(f.vocab)));
    train::SampleOptions o;
    o.temperature = 0;
    o.kv_cache = !f.no_kv_cache;
    o.cuda_graph = !f.no_cuda_graph;
    o.max_new_tokens = std::min<int64_t>(f.tokens, 8);
    train::generate_batch(model, prompts, o);  // warm-up: allocator, kernels, libraries
    o.max_new_tokens = f.tokens;
    train::SampleStats st;
    train::generate_batch(model, prompts, o, {}, &st);
    const double prefill = st.prefill_seconds > 0 ? st.prefill_tokens / st.prefill_seconds : 0;
    const double decode = st.decode_seconds > 0 ? st.decode_tokens / st.decode_seconds : 0;
    const double step_ms = st.decode_tokens > 0 ? 1e3 * st.decode_seconds / (st.decode_tokens / double(B)) : 0;
    std::printf("  %5lld | %13.1f | %12.1f | %11.3f | %lld\n", (long long)B, prefill, decode,
                step_ms, (long long)st.window_restarts);
    std::fflush(stdout);
    rows.push_back({{"batch", B}, {"prefill_tokens_per_s", prefill}, {"decode_tokens_per_s", decode},
                    {"ms_per_step", step_ms}, {"window_restarts", st.window_restarts},
                    {"decode_tokens", st.decode_tokens}, {"prefill_tokens", st.prefill_tokens}});
  }
  if (!f.json.empty()) {
    nlohmann::json j = {{"device", device.str()}, {"dtype", dtype_name(dtype)},
                        {"n_layer", f.n_layer}, {"n_embd", f.n_embd}, {"n_head", f.n_head},
                        {"block_size", f.block_size}, {"vocab", f.vocab},
                        {"prompt_len", f.prompt_len}, {"tokens", f.tokens},
                        {"kv_cache", !f.no_kv_cache},
                    {"cuda_graph", !f.no_kv_cache && device.is_cuda() && !f.no_cuda_graph},
                    {"results", rows}};
    train::write_file_atomic(f.json, j.dump(2) + "\n");
  }
}

}  // namespace

void register_bench_decode(CLI::App& bench) {
  auto flags = std::make_shared<DecodeFlags>();
  DecodeFlags& f = *flags;
  using Range = train::NumberRange;
  CLI::App* cmd = bench.add_subcommand(
      "decode", "tokens/s of generation with the KV cache, at several batch sizes");
  cmd->add_option("--device", f.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "cuda:0"}))->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "the model's dtype: fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  cmd->add_option("--n-layer", f.n_layer, "transformer blocks")
      ->transform(in_range(Range::whole("--n-layer", 1, 1024)))->capture_default_str();
  cmd->add_option("--n-head", f.n_head, "attention heads")
      ->transform(in_range(Range::whole("--n-head", 1, 1024)))->capture_default_str();
  cmd->add_option("--n-embd", f.n_embd, "width")
      ->transform(in_range(Range::whole("--n-embd", 1, 65536)))->capture_default_str();
  cmd->add_option("--block-size", f.block_size, "context length")
      ->transform(in_range(Range::whole("--block-size", 1, 1048576)))->capture_default_str();
  cmd->add_option("--vocab", f.vocab, "vocabulary size")
      ->transform(in_range(Range::whole("--vocab", 1, 1048576)))->capture_default_str();
  cmd->add_option("--batch", f.batches, "batch sizes (comma separated)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--prompt-len", f.prompt_len, "prompt tokens per sequence")
      ->transform(in_range(Range::whole("--prompt-len", 1, 1048576)))->capture_default_str();
  cmd->add_option("--tokens", f.tokens, "new tokens per sequence")
      ->transform(in_range(Range::whole("--tokens", 1, 1000000)))->capture_default_str();
  cmd->add_flag("--no-kv-cache", f.no_kv_cache, "recompute the whole context for every token");
  cmd->add_flag("--no-cuda-graph", f.no_cuda_graph,
                "launch each decode step kernel by kernel instead of replaying a CUDA graph");
  cmd->add_option("--json", f.json, "also write the results to this JSON file");
  cmd->callback([flags] { run_bench_decode(*flags); });
}

}  // namespace fg::cli
