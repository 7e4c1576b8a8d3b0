// Value conversions between the element types, usable on the host and in CUDA kernels.
#pragma once
#include <type_traits>

#include "core/half.h"

namespace fg {

template <typename T> struct Convert {
  FG_HD static double to_double(T x) { return double(x); }
  FG_HD static T from_double(double v) { return T(v); }
};
template <> struct Convert<bfloat16> {
  FG_HD static double to_double(bfloat16 x) { return double(float(x)); }
  FG_HD static bfloat16 from_double(double v) { return bfloat16(float(v)); }
};
template <> struct Convert<float16> {
  FG_HD static double to_double(float16 x) { return double(float(x)); }
  FG_HD static float16 from_double(double v) { return float16(float(v)); }
};

// Converts between any two element types (through float for the 16-bit ones).
template <typename To, typename From> FG_HD To convert(From x) {
  if constexpr (std::is_same<To, From>::value) {
    return x;
  } else if constexpr (std::is_same<From, float>::value) {
    if constexpr (std::is_same<To, bfloat16>::value || std::is_same<To, float16>::value)
      return To(x);
    else
      return To(x);
  } else if constexpr (std::is_same<To, float>::value &&
                       (std::is_same<From, bfloat16>::value || std::is_same<From, float16>::value)) {
    return float(x);
  } else {
    return Convert<To>::from_double(Convert<From>::to_double(x));
  }
}

}  // namespace fg
