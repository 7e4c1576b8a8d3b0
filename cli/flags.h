// Checks the subcommands attach to their flags, so that a bad value is refused while the
// command line is parsed, before any work, with one line that names the flag, the value and
// what is accepted ("--steps must be a whole number from 1 to 1000000000, got 0").
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "train/config.h"

namespace fg::cli {

// For a numeric flag: refuses a value outside `range` (train::NumberRange::check_text: strict
// decimal for whole numbers, finite for real ones) and hands CLI11 the value in plain decimal.
// Attach with ->transform().
CLI::Validator in_range(const train::NumberRange& range);

// For a path flag: refuses an empty value.
CLI::Validator non_empty(const std::string& flag, const std::string& what);

}  // namespace fg::cli
