// Strict reads of JSON numbers from files flashgrad did not necessarily write (checkpoints,
// safetensors headers, tokenizer descriptions).
//
// nlohmann::json's get<T>() converts any number to any arithmetic T with a plain cast: 1e30
// read as an integer is undefined behaviour, 2.5 becomes 2, and 2^40 read as int wraps. These
// helpers refuse all three with an fg::Error that names the field (`what`, for instance
// "checkpoint 'out/tiny' is corrupt: field 'step'"), so a damaged file cannot become a silently
// wrong setting.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fg::train {

// Reads v as T. Integers must be JSON integers within T's range; reals must be numbers.
template <class T>
T json_number(const nlohmann::json& v, const std::string& what) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  if constexpr (std::is_floating_point_v<T>) {
    FG_CHECK(v.is_number(), what, " must be a number, got ", v.dump());
    return v.get<T>();
  } else {
    using Lim = std::numeric_limits<T>;
    bool fits = false;
    if (v.is_number_unsigned()) {
      fits = v.get<uint64_t>() <= uint64_t(Lim::max());
    } else if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      fits = x >= 0 ? uint64_t(x) <= uint64_t(Lim::max()) : std::is_signed_v<T> && x >= int64_t(Lim::min());
    }
    FG_CHECK(fits, what, " must be a whole number from ", +Lim::min(), " to ", +Lim::max(),
             ", got ", v.dump());
    return v.get<T>();
  }
}

// Reads a JSON array of numbers, each as json_number<T>.
template <class T>
std::vector<T> json_numbers(const nlohmann::json& v, const std::string& what) {
  FG_CHECK(v.is_array(), what, " must be an array of numbers, got ", v.dump().substr(0, 80));
  std::vector<T> out;
  out.reserve(v.size());
  for (const nlohmann::json& x : v) out.push_back(json_number<T>(x, what));
  return out;
}

}  // namespace fg::train
