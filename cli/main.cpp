// The `flashgrad` command: each subcommand is registered by its file in cli/ (see
// cli/commands.h); errors of all of them are reported here.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"flashgrad: a small C++/CUDA training library built around FlashAttention"};
  app.require_subcommand(1);
  fg::cli::register_info(app);
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
  } catch (const std::exception& e) {  // fg::Error and whatever else escaped a command
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
