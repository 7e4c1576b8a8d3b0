// Dtype dispatch: turns a runtime DType into a compile-time type for a body (a lambda).
//
//   FG_DISPATCH_FLOAT(dt, "op", [&] { run<scalar_t>(...); });   f32, f64, bf16, f16
//   FG_DISPATCH_ALL(dt, "op", [&] { ... scalar_t ... });         the above and i32, i64
//   FG_DISPATCH_INDEX(dt, "op", [&] { ... index_t ... });        i32, i64 (indices, targets)
//
// Any other dtype throws fg::Error naming the op and the dtypes it takes.
#pragma once
#include <string>

#include "core/dtype.h"
#include "core/error.h"

#define FG_DTYPE_CASE(ENUM, TYPE, ...) FG_DTYPE_CASE_AS(scalar_t, ENUM, TYPE, __VA_ARGS__)
#define FG_DTYPE_CASE_AS(NAME, ENUM, TYPE, ...) \
  case ::fg::DType::ENUM: {            \
    using NAME = TYPE;                 \
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
#define FG_DISPATCH_INDEX(DT, NAME, ...)                                                \
  switch (DT) {                                                                         \
    FG_DTYPE_CASE_AS(index_t, i32, int32_t, __VA_ARGS__)                                \
    FG_DTYPE_CASE_AS(index_t, i64, int64_t, __VA_ARGS__)                                \
    default:                                                                            \
      throw ::fg::Error(std::string(NAME) + ": index dtype " + ::fg::dtype_name(DT) +   \
                        " is not supported (use i32 or i64)");                          \
  }
