// The subcommands of `flashgrad`. Each cli/<name>.cpp defines register_<name>(app), which adds
// its subcommand, its flags and a callback; the callbacks parse and print, and leave the work to
// the library (train/, autograd/, kernels/). main.cpp calls every register_* function and
// handles errors for all of them in one place:
//   fg::Error                "error: <message>" on stderr, exit code 1
//   CLI11 parse errors       CLI11's message and exit code (e.g. unknown flags)
//   fg::cli::Exit{code}      exit with `code` (the command has printed what it had to say)
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace fg::cli {

struct Exit {
  int code;
};

// The command line as main() received it (for `train --gpus N`, which starts its workers with
// the same arguments).
void set_program_args(int argc, char** argv);
const std::vector<std::string>& program_args();
// `<who> --gpus N` (N > 1) in the process the user started: checks that this build has NCCL,
// that the device is not the CPU and that N GPUs are visible, then runs N workers of this
// program with its own arguments plus `extra` (train/launch.h) and throws Exit with their code
// unless it is 0. cli/main.cpp.
void launch_workers(const std::string& who, int64_t gpus, const std::string& device,
                    const std::vector<std::string>& extra, double hang_s = 0);

void register_train(CLI::App& app);       // cli/train.cpp
void register_sample(CLI::App& app);      // cli/sample.cpp
void register_gradcheck(CLI::App& app);   // cli/gradcheck.cpp
void register_memprofile(CLI::App& app);  // cli/memprofile.cpp
void register_bench(CLI::App& app);       // cli/bench.cpp (bench attention)
void register_bench_decode(CLI::App& bench);  // cli/bench_decode.cpp (bench decode)
void register_bench_decode_attention(CLI::App& bench);  // cli/bench_decode_attention.cpp
void register_bench_train(CLI::App& bench);  // cli/bench_train.cpp
void register_bench_ops(CLI::App& bench);    // cli/bench_ops.cpp
void register_info(CLI::App& app);        // cli/info.cpp

}  // namespace fg::cli
