// env_flag, env_int and env_choice (core/env.h): how the FLASHGRAD_* switches read the environment.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>

#include "core/env.h"

using namespace fg;

namespace {
const char* const kVar = "FLASHGRAD_TEST_ENV_VARIABLE";
void put(const char* value) {
  if (value) setenv(kVar, value, 1);
  else unsetenv(kVar);
}
}  // namespace

TEST_CASE("env_flag: on unless unset, empty, 0, false, off or no", "[env]") {
  put(nullptr);
  CHECK_FALSE(env_flag(kVar));
  CHECK(env_flag(kVar, /*unset=*/true));
  put("");
  CHECK_FALSE(env_flag(kVar));
  CHECK(env_flag(kVar, true));
  put("0");
  CHECK_FALSE(env_flag(kVar));
  CHECK_FALSE(env_flag(kVar, true));  // "0" turns off a switch that is on by default
  for (const char* off : {"false", "FALSE", "Off", "no", "NO"}) {
    put(off);
    INFO(off);
    CHECK_FALSE(env_flag(kVar));
    CHECK_FALSE(env_flag(kVar, true));
  }
  for (const char* on : {"1", "yes", "2", "00", "true", "on", "nope", "of"}) {
    put(on);
    INFO(on);
    CHECK(env_flag(kVar));
    CHECK(env_flag(kVar, true));
  }
  put(nullptr);
}

TEST_CASE("env_int: the number, else the fallback", "[env]") {
  put(nullptr);
  CHECK(env_int(kVar, 7, 1, 32) == 7);
  put("12");
  CHECK(env_int(kVar, 7, 1, 32) == 12);
  put("32");
  CHECK(env_int(kVar, 7, 1, 32) == 32);
  put(" 5");  // leading blanks are skipped, trailing ones are not
  CHECK(env_int(kVar, 7, 1, 32) == 5);
  for (const char* bad : {"", "0", "33", "-4", "12x", "x", "5 ", "1e3"}) {
    put(bad);
    INFO("'" << bad << "'");
    CHECK(env_int(kVar, 7, 1, 32) == 7);
  }
  put("9223372036854775807");
  CHECK(env_int(kVar, 1, 1, INT64_MAX) == INT64_MAX);
  put(nullptr);
}

TEST_CASE("env_choice: the named choice, the first when unset, an error otherwise", "[env]") {
  put(nullptr);
  CHECK(env_choice(kVar, {"auto", "cluster", "split"}) == 0);
  put("");
  CHECK(env_choice(kVar, {"auto", "cluster", "split"}) == 0);
  put("Split");
  CHECK(env_choice(kVar, {"auto", "cluster", "split"}) == 2);
  put("cluster");
  CHECK(env_choice(kVar, {"auto", "cluster", "split"}) == 1);
  put("clusters");
  CHECK_THROWS_WITH(env_choice(kVar, {"auto", "cluster", "split"}),
                    Catch::Contains("FLASHGRAD_TEST_ENV_VARIABLE=clusters") &&
                        Catch::Contains("use one of auto, cluster, split"));
  put(nullptr);
}
