// Element types of a Tensor, and how to name, size and dispatch on them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/common/half.h"

namespace fg {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
  }
  return "?";
}

inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
}

// Parses "f32"/"fp32"/"float32", "bf16"/"bfloat16", ... Throws on anything else.
DType dtype_from_string(const std::string& s);

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bfloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<float16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };

// The type arithmetic on T is carried out in: float for the 16-bit types, T otherwise.
template <typename T> struct acc_type { using type = T; };
template <> struct acc_type<bfloat16> { using type = float; };
template <> struct acc_type<float16> { using type = float; };

}  // namespace fg

// Turns a runtime DType into a compile-time type `scalar_t` for the body.
// FG_DISPATCH_FLOAT covers f32, f64, bf16, f16; FG_DISPATCH_ALL adds i32 and i64.
#define FG_DTYPE_CASE(ENUM, TYPE, ...) \
  case ::fg::DType::ENUM: {            \
    using scalar_t = TYPE;             \
    __VA_ARGS__();                     \
    break;                             \
  }
#define FG_DISPATCH_FLOAT(DT, NAME, ...)                                        \
  switch (DT) {                                                                 \
    FG_DTYPE_CASE(f32, float, __VA_ARGS__)                                      \
    FG_DTYPE_CASE(f64, double, __VA_ARGS__)                                     \
    FG_DTYPE_CASE(bf16, ::fg::bfloat16, __VA_ARGS__)                            \
    FG_DTYPE_CASE(f16, ::fg::float16, __VA_ARGS__)                              \
    default:                                                                    \
      throw ::fg::Error(std::string(NAME) + ": dtype " + ::fg::dtype_name(DT) + \
                        " is not supported (use f32, f64, bf16 or f16)");       \
  }
#define FG_DISPATCH_ALL(DT, NAME, ...)                                          \
  switch (DT) {                                                                 \
    FG_DTYPE_CASE(f32, float, __VA_ARGS__)                                      \
    FG_DTYPE_CASE(f64, double, __VA_ARGS__)                                     \
    FG_DTYPE_CASE(bf16, ::fg::bfloat16, __VA_ARGS__)                            \
    FG_DTYPE_CASE(f16, ::fg::float16, __VA_ARGS__)                              \
    FG_DTYPE_CASE(i32, int32_t, __VA_ARGS__)                                    \
    FG_DTYPE_CASE(i64, int64_t, __VA_ARGS__)                                    \
    default:                                                                    \
      throw ::fg::Error(std::string(NAME) + ": unknown dtype");                 \
  }
