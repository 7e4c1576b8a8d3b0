// The FLASHGRAD_* switches of the environment. Each is read once, where it acts, into a static;
// README.md, "Environment variables", lists them all.
#pragma once
#include <strings.h>

#include <cstdint>
#include <cstdlib>

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

}  // namespace fg
