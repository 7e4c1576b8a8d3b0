// Element types of flashgrad (what a tensor or a kernel operand holds), their names and sizes.
// The macros that turn a runtime DType into a template type are in core/dispatch.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/half.h"

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
