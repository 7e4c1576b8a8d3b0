// The `flashgrad` command: subcommands are registered by the files of examples/.
#include <CLI/CLI.hpp>

#include <iostream>

#include "tensor/tensor.h"

int main(int argc, char** argv) {
  CLI::App app{"flashgrad: a small C++/CUDA training library built around FlashAttention"};
  app.require_subcommand(1);
  auto* info = app.add_subcommand("info", "print the build and the devices");
  info->callback([] {
    std::cout << "flashgrad 0.1.0\ncuda available: " << (fg::cuda_available() ? "yes" : "no")
              << "\n";
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fg::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
