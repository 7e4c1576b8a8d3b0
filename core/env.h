// The FLASHGRAD_* switches of the environment. Each is read once, where it acts, into a static;
// README.md, "Environment variables", lists them all.
#pragma once
#include <strings.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "core/error.h"

namespace fg {

// Whether the variable is on: set to anything but "0", "false", "off" or "no" (in any case).
// `unset` is the answer when it is not set, or set to "": a switch that is on by default takes
// true.
inline bool env_flag(const char* name, bool unset = false) {
  const char* v = std::getenv(name);
  if (!v || v[0] == '\0') return unset;
  for (const char* off : {"0", "false", "off", "no"})
    if (strcasecmp(v, off) == 0) return false;
  return true;
}

// The whole number the variable holds, or `fallback` when it is unset, not a whole number, or
// outside [lo, hi].
inline int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (!v || v[0] == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi) return fallback;
  return int64_t(x);
}

// Which of `choices` the variable names (in any case), as its index; 0, the first, when it is
// unset or "". Any other value throws fg::Error naming the variable and the choices.
inline int env_choice(const char* name, std::initializer_list<const char*> choices) {
  const char* v = std::getenv(name);
  if (!v || v[0] == '\0') return 0;
  int i = 0;
  std::string names;
  for (const char* c : choices) {
    if (strcasecmp(v, c) == 0) return i;
    names += (i++ ? ", " : "") + std::string(c);
  }
  throw Error(str(name, "=", v, ": use one of ", names));
}

}  // namespace fg
