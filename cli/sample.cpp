// `flashgrad sample`: text from a checkpoint written by `flashgrad train`, printed as it is
// drawn. Ctrl-C stops it at once (exit code 130).
//
//   flashgrad sample --ckpt out/tiny --prompt "The " --tokens 300 --temperature 0.8 --top-k 40
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/flags.h"
#include "train/checkpoint.h"
#include "train/sample.h"
#include "train/trainer.h"

namespace fg::cli {

namespace {

struct SampleFlags {
  std::string ckpt, prompt, device = "auto";
  int64_t tokens = 200, top_k = 40;
  double temperature = 0.8;
  uint64_t seed = 42;
};

void run_sample(const SampleFlags& f) {
  std::error_code ec;
  FG_CHECK(!std::filesystem::exists(f.ckpt, ec) || std::filesystem::is_directory(f.ckpt, ec),
           "--ckpt '", f.ckpt, "' is a file; give the checkpoint directory (the --out of "
           "`flashgrad train`)");
  train::Checkpoint ckpt = train::load_checkpoint(f.ckpt, /*with_optimizer=*/false);
  std::shared_ptr<nn::GPT> model = train::model_from_checkpoint(ckpt);
  model->to(device_from_string(f.device));
  std::vector<int32_t> prompt;
  try {
    prompt = ckpt.tokenizer->encode(f.prompt.empty() ? "\n" : f.prompt);
  } catch (const Error& e) {
    throw Error(str("--prompt: ", e.what()));
  }
  if (prompt.empty()) prompt = {0};
  train::SampleOptions so;
  so.max_new_tokens = f.tokens;
  so.temperature = f.temperature;
  so.top_k = f.top_k;
  so.seed = f.seed;
  so.stop = [] { return train::stop_requested(); };
  train::SigintGuard ctrl_c;
  std::cout << f.prompt << std::flush;
  train::generate(*model, prompt, so, [&](int32_t t) {
    std::cout << ckpt.tokenizer->decode({t}) << std::flush;
  });
  std::cout << "\n";
  if (train::stop_requested()) throw Exit{130};
}

}  // namespace

void register_sample(CLI::App& app) {
  auto flags = std::make_shared<SampleFlags>();
  SampleFlags& f = *flags;
  using Range = train::NumberRange;
  CLI::App* cmd = app.add_subcommand("sample", "generate text from a trained checkpoint");
  cmd->add_option("--ckpt", f.ckpt, "checkpoint directory written by `flashgrad train`")
      ->required()
      ->check(non_empty("--ckpt", "a checkpoint directory"));
  cmd->add_option("--prompt", f.prompt, "text to continue (default: a newline)");
  cmd->add_option("--tokens", f.tokens, "tokens to generate")
      ->transform(in_range(Range::whole("--tokens", 0, 1000000)))->capture_default_str();
  cmd->add_option("--temperature", f.temperature, "softmax temperature (0 = greedy)")
      ->transform(in_range(Range::real("--temperature", 0, INFINITY, false, false)))
      ->capture_default_str();
  cmd->add_option("--top-k", f.top_k, "sample among the k most likely tokens (0 = all)")
      ->transform(in_range(Range::whole("--top-k", 0, 2147483647)))->capture_default_str();
  cmd->add_option("--seed", f.seed, "sampling seed")
      ->transform(in_range(Range::unsigned_whole("--seed")))->capture_default_str();
  cmd->add_option("--device", f.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "cuda:0"}))->capture_default_str();
  cmd->callback([flags] { run_sample(*flags); });
}

}  // namespace fg::cli
