// `flashgrad info`: the version and whether a CUDA device is usable.
#include <iostream>

#include "cli/commands.h"
#include "tensor/tensor.h"

namespace fg::cli {

void register_info(CLI::App& app) {
  auto* info = app.add_subcommand("info", "print the build and the devices");
  info->callback([] {
    std::cout << "flashgrad 0.1.0\ncuda available: " << (cuda_available() ? "yes" : "no") << "\n";
  });
}

}  // namespace fg::cli
