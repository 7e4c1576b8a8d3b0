// The `flashgrad` command: each subcommand is registered by its file in cli/ (see
// cli/commands.h); errors of all of them are reported here, each as one line "error: ..." on
// stderr with a non-zero exit code.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "tensor/device.h"
#include "train/comm.h"
#include "train/launch.h"

namespace {

std::vector<CLI::App*> subcommands_of(CLI::App* app) {
  return app->get_subcommands([](CLI::App*) { return true; });
}

std::string command_names(CLI::App* app) {
  std::string names;
  for (CLI::App* sub : subcommands_of(app)) names += (names.empty() ? "" : ", ") + sub->get_name();
  return names;
}

// The subcommands named on the command line, e.g. "flashgrad gradcheck attention", and, in
// `problem`, what is wrong with them: a word that names no subcommand where one is needed, or
// no subcommand at all. CLI11 would say "A subcommand is required" for both.
std::string command_path(CLI::App& root, int argc, char** argv, std::string* problem) {
  std::string path = "flashgrad";
  CLI::App* app = &root;
  bool help = false;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string word = argv[i];
    if (word == "-h" || word == "--help") help = true;
    if (!word.empty() && word[0] == '-') break;
    CLI::App* next = nullptr;
    for (CLI::App* sub : subcommands_of(app))
      if (sub->get_name() == word) next = sub;
    if (!next) {
      if (app->get_require_subcommand_min() > 0)
        *problem = "unknown command '" + word + "' for '" + path + "'; the commands are " +
                   command_names(app);
      return path;
    }
    app = next;
    path += " " + word;
  }
  for (; i < argc; ++i) help = help || std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help";
  if (!help && app->get_require_subcommand_min() > 0)
    *problem = "'" + path + "' needs a command: " + command_names(app);
  return path;
}

// CLI11's message, without the flag named twice: a check of cli/flags.h already names it.
std::string parse_message(const CLI::ParseError& e) {
  std::string m = e.what();
  const size_t colon = m.find(": ");
  if (colon != std::string::npos && colon > 0 &&
      m.compare(colon + 2, colon + 1, m.substr(0, colon) + " ") == 0)
    m = m.substr(colon + 2);
  return m;
}

}  // namespace

namespace fg::cli {
namespace {
std::vector<std::string>& args_storage() {
  static std::vector<std::string> args;
  return args;
}
}  // namespace
void set_program_args(int argc, char** argv) { args_storage().assign(argv, argv + argc); }
const std::vector<std::string>& program_args() { return args_storage(); }

void launch_workers(const std::string& who, int64_t gpus, const std::string& device,
                    const std::vector<std::string>& extra, double hang_s) {
  FG_CHECK(train::nccl_available(), who, " --gpus ", gpus, ": this flashgrad was built without "
           "NCCL; install it (Debian/Ubuntu: libnccl-dev; the CUDA container images ship it) "
           "and rebuild, or run on one GPU");
  FG_CHECK(device != "cpu", who, " --gpus ", gpus, " runs on GPUs; drop --device cpu");
  const int devices = cuda_device_count();
  FG_CHECK(devices >= gpus, who, " --gpus ", gpus, ": this machine shows ", devices,
           " CUDA device(s)", devices > 0 ? "; lower --gpus" : "; check nvidia-smi");
  std::vector<std::string> args = program_args();
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) args[0] = self.string();
  args.insert(args.end(), extra.begin(), extra.end());
  std::cout << "flashgrad " << who << ": " << gpus << " workers, one per GPU; rank 0 prints\n"
            << std::flush;
  const int code = train::run_workers(args, gpus, train::free_tcp_port(), std::cerr,
                                      /*grace_s=*/10, hang_s);
  if (code != 0) throw Exit{code};
}
}  // namespace fg::cli

int main(int argc, char** argv) {
  fg::cli::set_program_args(argc, argv);
  // Under torchrun or Slurm, a `train` worker takes its LOCAL_RANK's GPU as cuda:0, which must
  // be settled before anything starts CUDA.
  if (argc > 1 && std::string(argv[1]) == "train") {
    try {
      fg::train::select_local_gpu([](const char* n) { return std::getenv(n); },
                                  [](const char* n, const char* v) { ::setenv(n, v, 1); });
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
  }
  CLI::App app{"flashgrad: a small C++/CUDA training library built around FlashAttention"};
  app.require_subcommand(1);
  // A flag given twice takes its last value, so that flags appended to a command override it.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  fg::cli::register_info(app);
  fg::cli::register_train(app);
  fg::cli::register_sample(app);
  fg::cli::register_gradcheck(app);
  fg::cli::register_memprofile(app);
  fg::cli::register_bench(app);
  std::string problem;
  const std::string path = command_path(app, argc, argv, &problem);
  const std::string hint = " (" + path + " --help lists them)";
  if (!problem.empty()) {
    std::cerr << "error: " << problem << hint << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "error: " << parse_message(e) << " (" << path << " --help lists the flags)\n";
    return e.get_exit_code();
  } catch (const fg::cli::Exit& e) {
    return e.code;
  } catch (const std::bad_alloc&) {
    std::cout.flush();
    std::cerr << "error: out of memory: '" << path << "' asked for more host memory than the "
              << "machine could give (std::bad_alloc); lower the sizes given on the command line"
              << "\n";
    return 1;
  } catch (const std::exception& e) {  // fg::Error and whatever else escaped a command
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
