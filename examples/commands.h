// The subcommands of `flashgrad`. Each examples/<name>_cli.cpp defines register_<name>(app),
// which adds its subcommand, its flags and a callback; main.cpp calls every register_*
// function and handles errors for all of them in one place:
//   fg::Error                "error: <message>" on stderr, exit code 1
//   CLI11 parse errors       CLI11's message and exit code (e.g. unknown flags)
//   fg::cli::Exit{code}      exit with `code` (the command has printed what it had to say)
#pragma once
#include <CLI/CLI.hpp>

namespace fg::cli {

struct Exit {
  int code;
};

void register_train(CLI::App& app);   // examples/train_cli.cpp
void register_sample(CLI::App& app);  // examples/sample_cli.cpp
void register_gradcheck(CLI::App& app);  // examples/gradcheck_cli.cpp
void register_memprofile(CLI::App& app);  // examples/memprofile_cli.cpp
void register_bench(CLI::App& app);  // examples/bench_cli.cpp

}  // namespace fg::cli
