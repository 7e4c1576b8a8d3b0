// Parsing dtype names (the spellings the CLI and the API accept).
#include "core/dtype.h"

#include "core/error.h"

namespace fg {

DType dtype_from_string(const std::string& s) {
  if (s == "f32" || s == "fp32" || s == "float32" || s == "float") return DType::f32;
  if (s == "f64" || s == "fp64" || s == "float64" || s == "double") return DType::f64;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "f16" || s == "fp16" || s == "float16" || s == "half") return DType::f16;
  if (s == "i32" || s == "int32") return DType::i32;
  if (s == "i64" || s == "int64") return DType::i64;
  throw Error(str("unknown dtype '", s, "': use fp32, fp64, bf16, fp16, i32 or i64"));
}

}  // namespace fg
