// `flashgrad sample`: text from a checkpoint written by `flashgrad train`. Several prompts
// (repeated --prompt, or --prompt-file with one per line) and --num-samples each are drawn as
// one batch, with a KV cache; --no-kv-cache recomputes the whole context for every token (the
// oracle the cache is tested against). Ctrl-C stops it at once (exit code 130).
//
//   flashgrad sample --ckpt out/tiny --prompt "The " --tokens 300 --temperature 0.8 --top-k 40
//   flashgrad sample --ckpt out/tiny --prompt-file prompts.txt --num-samples 4 --top-p 0.9
//
// One sample streams to stdout as it is drawn. Several are printed one after another when the
// batch is done, each under a "--- sample i/n (prompt p) ---" line, with a progress line on
// stderr meanwhile. A summary line on stderr gives the prefill and decode speeds.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/flags.h"
#include "train/checkpoint.h"
#include "train/fileio.h"
#include "train/sample.h"
#include "train/trainer.h"

namespace fg::cli {

namespace {

struct SampleFlags {
  std::string ckpt, prompt_file, device = "auto", dtype = "fp32";
  std::vector<std::string> prompts;
  int64_t tokens = 200, top_k = 40, num_samples = 1;
  double temperature = 0.8, top_p = 1.0;
  uint64_t seed = 42;
  bool no_kv_cache = false, no_cuda_graph = false;
};

// The prompts: --prompt values, then the lines of --prompt-file; a newline when none.
std::vector<std::string> read_prompts(const SampleFlags& f) {
  std::vector<std::string> out = f.prompts;
  if (!f.prompt_file.empty()) {
    std::istringstream in(train::read_file(f.prompt_file, "--prompt-file"));
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) out.push_back(line), ++n;
    }
    FG_CHECK(n > 0, "--prompt-file '", f.prompt_file, "' holds no prompt (one per line)");
  }
  if (out.empty()) out.push_back("\n");
  return out;
}

std::string rate(int64_t tokens, double seconds) {
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << (seconds > 0 ? double(tokens) / seconds : 0.0);
  return s.str();
}

void run_sample(const SampleFlags& f) {
  std::error_code ec;
  FG_CHECK(!std::filesystem::exists(f.ckpt, ec) || std::filesystem::is_directory(f.ckpt, ec),
           "--ckpt '", f.ckpt, "' is a file; give the checkpoint directory (the --out of "
           "`flashgrad train`)");
  const std::vector<std::string> texts = read_prompts(f);
  train::Checkpoint ckpt = train::load_checkpoint(f.ckpt, /*with_optimizer=*/false);
  std::shared_ptr<nn::GPT> model = train::model_from_checkpoint(ckpt);
  model->to(device_from_string(f.device));
  model->to(dtype_from_string(f.dtype));  // the KV cache takes the model's dtype
  std::vector<std::vector<int32_t>> prompts;  // each prompt num_samples times
  std::vector<int64_t> prompt_of;
  for (size_t p = 0; p < texts.size(); ++p) {
    std::vector<int32_t> ids;
    try {
      ids = ckpt.tokenizer->encode(texts[p]);
    } catch (const Error& e) {
      throw Error(str("--prompt ", p + 1, ": ", e.what()));
    }
    if (ids.empty()) ids = {0};
    for (int64_t s = 0; s < f.num_samples; ++s) prompts.push_back(ids), prompt_of.push_back(int64_t(p));
  }
  const int64_t n = int64_t(prompts.size());
  train::SampleOptions so;
  so.max_new_tokens = f.tokens;
  so.temperature = f.temperature;
  so.top_k = f.top_k;
  so.top_p = f.top_p;
  so.seed = f.seed;
  so.kv_cache = !f.no_kv_cache;
  so.cuda_graph = !f.no_cuda_graph;
  so.stop = [] { return train::stop_requested(); };
  train::SigintGuard ctrl_c;
  train::SampleStats st;
  std::vector<std::vector<int32_t>> out;
  if (n == 1) {
    std::cout << texts[0] << std::flush;
    out = train::generate_batch(*model, prompts, so, [&](int64_t, int32_t t) {
      std::cout << ckpt.tokenizer->decode({t}) << std::flush;
    }, &st);
    std::cout << "\n";
  } else {
    int64_t drawn = 0;
    out = train::generate_batch(*model, prompts, so, [&](int64_t row, int32_t) {
      if (row == n - 1 && ++drawn % 50 == 0)
        std::cerr << "\rsample: " << drawn << "/" << f.tokens << " tokens x " << n << " samples"
                  << std::flush;
    }, &st);
    if (drawn >= 50) std::cerr << "\n";
    for (int64_t r = 0; r < n; ++r) {
      std::cout << "--- sample " << r + 1 << "/" << n << " (prompt " << prompt_of[size_t(r)] + 1
                << ") ---\n"
                << texts[size_t(prompt_of[size_t(r)])] << ckpt.tokenizer->decode(out[size_t(r)])
                << "\n";
    }
    std::cout << std::flush;
  }
  std::cerr << "sample: " << n << (n == 1 ? " sequence" : " sequences") << " on "
            << model->wte->weight.device().str() << " in " << f.dtype << ", KV cache "
            << (so.kv_cache ? "on" : "off") << (st.cuda_graph ? ", decode step as a CUDA graph" : "")
            << "; prefill " << st.prefill_tokens << " tokens at " << rate(st.prefill_tokens, st.prefill_seconds)
            << " tokens/s; decode " << st.decode_tokens << " tokens at "
            << rate(st.decode_tokens, st.decode_seconds) << " tokens/s";
  if (st.window_restarts > 0) std::cerr << "; " << st.window_restarts << " window restarts";
  std::cerr << "\n";
  if (train::stop_requested()) throw Exit{130};
}

}  // namespace

void register_sample(CLI::App& app) {
  auto flags = std::make_shared<SampleFlags>();
  SampleFlags& f = *flags;
  using Range = train::NumberRange;
  CLI::App* cmd = app.add_subcommand("sample", "generate text from a trained checkpoint");
  cmd->footer(
      "Prompts (each repeated --prompt, then each line of --prompt-file) times --num-samples "
      "are drawn as one batch. One sample streams as it is drawn; several are printed when the "
      "batch is done. A summary line on stderr gives the prefill and decode speeds. Past the "
      "model's context (block_size) the window of tokens a sample attends to restarts from its "
      "last block_size/2 tokens, which are run through the model again; --no-kv-cache "
      "follows the same rule, recomputing the window for every token.");
  cmd->add_option("--ckpt", f.ckpt, "checkpoint directory written by `flashgrad train`")
      ->required()
      ->check(non_empty("--ckpt", "a checkpoint directory"));
  cmd->add_option("--prompt", f.prompts, "text to continue; repeat for several (default: a newline)");
  cmd->add_option("--prompt-file", f.prompt_file, "a file of prompts, one per line")
      ->check(non_empty("--prompt-file", "a file"));
  cmd->add_option("--num-samples", f.num_samples, "samples per prompt")
      ->transform(in_range(Range::whole("--num-samples", 1, 4096)))->capture_default_str();
  cmd->add_option("--tokens", f.tokens, "tokens to generate per sample")
      ->transform(in_range(Range::whole("--tokens", 0, 1000000)))->capture_default_str();
  cmd->add_option("--temperature", f.temperature, "softmax temperature (0 = greedy)")
      ->transform(in_range(Range::real("--temperature", 0, INFINITY, false, false)))
      ->capture_default_str();
  cmd->add_option("--top-k", f.top_k, "sample among the k most likely tokens (0 = all)")
      ->transform(in_range(Range::whole("--top-k", 0, 2147483647)))->capture_default_str();
  cmd->add_option("--top-p", f.top_p,
                  "sample among the most likely tokens whose probabilities sum to p (1 = all)")
      ->transform(in_range(Range::real("--top-p", 0, 1, true, false)))->capture_default_str();
  cmd->add_option("--seed", f.seed, "sampling seed")
      ->transform(in_range(Range::unsigned_whole("--seed")))->capture_default_str();
  cmd->add_option("--device", f.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "cuda:0"}))->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "compute and KV-cache dtype: fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  cmd->add_flag("--no-kv-cache", f.no_kv_cache,
                "recompute the whole context for every token (slow; the cache's oracle)");
  cmd->add_flag("--no-cuda-graph", f.no_cuda_graph,
                "on a GPU, launch each decode step kernel by kernel instead of replaying it as "
                "one CUDA graph (same tokens, slower)");
  cmd->callback([flags] { run_sample(*flags); });
}

}  // namespace fg::cli
