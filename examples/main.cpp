// The `flashgrad` command: subcommands are registered by the files of examples/ (see
// examples/commands.h); errors of all of them are reported here.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "examples/commands.h"
#include "tensor/tensor.h"

int main(int argc, char** argv) {
  CLI::App app{"flashgrad: a small C++/CUDA training library built around FlashAttention"};
  app.require_subcommand(1);
  auto* info = app.add_subcommand("info", "print the build and the devices");
  info->callback([] {
    std::cout << "flashgrad 0.1.0\ncuda available: " << (fg::cuda_available() ? "yes" : "no")
              << "\n";
  });
  fg::cli::register_train(app);
  fg::cli::register_sample(app);
  fg::cli::register_gradcheck(app);
  fg::cli::register_memprofile(app);
  fg::cli::register_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fg::cli::Exit& e) {
    return e.code;
  } catch (const fg::Error& e) {
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
