// Flag checks shared by the subcommands (see cli/flags.h).
#include "cli/flags.h"

#include <cmath>

namespace fg::cli {

namespace {

// The accepted values as the help shows them after the type: "INT:1..1000000000".
std::string short_description(const train::NumberRange& r) {
  using Kind = train::NumberRange::Kind;
  if (r.kind == Kind::unsigned_whole) return "0..2^64-1";
  if (r.kind == Kind::whole) return str(int64_t(r.lo), "..", int64_t(r.hi));
  if (std::isinf(r.hi)) return str(r.lo_open ? ">" : ">=", r.lo);
  return str(r.lo_open ? "(" : "[", r.lo, ",", r.hi, r.hi_open ? ")" : "]");
}

}  // namespace

CLI::Validator in_range(const train::NumberRange& range) {
  return CLI::Validator(
      [range](std::string& text) {
        std::string canonical;
        std::string refusal = range.check_text(text, &canonical);
        if (refusal.empty()) text = canonical;
        return refusal;
      },
      short_description(range));
}

CLI::Validator non_empty(const std::string& flag, const std::string& what) {
  return CLI::Validator(
      [flag, what](std::string& text) {
        return text.empty() ? str(flag, " must name ", what, ", got ''") : std::string();
      },
      "");
}

}  // namespace fg::cli
