// Element conversions and math in the accumulation type of the SIMT attention kernels and of
// the backward steps every family shares: float for f32, bf16 and f16, double for f64.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "kernels/attention/common/ptx.cuh"

namespace fg {
namespace attn {

template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

template <typename T> FG_ATTN_DEV typename Acc<T>::type load_acc(const T* ptr) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return *ptr;
  } else if constexpr (std::is_same_v<T, float16>) {
    return __half2float(__ushort_as_half(ptr->bits));
  } else {
    return float(*ptr);  // bf16 -> f32 is a shift
  }
}

template <typename T, typename A> FG_ATTN_DEV void store_acc(T* ptr, A x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    *ptr = x;
  } else if constexpr (std::is_same_v<T, float16>) {
    ptr->bits = __half_as_ushort(__float2half_rn(x));
  } else {
    ptr->bits = __bfloat16_as_ushort(__float2bfloat16_rn(x));
  }
}

FG_ATTN_DEV float exp_acc(float x) { return expf(x); }
FG_ATTN_DEV double exp_acc(double x) { return exp(x); }
FG_ATTN_DEV float log_acc(float x) { return logf(x); }
FG_ATTN_DEV double log_acc(double x) { return log(x); }
template <typename A> FG_ATTN_DEV A neg_inf() { return -A(INFINITY); }

FG_ATTN_DEV int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
FG_ATTN_DEV int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

}  // namespace attn
}  // namespace fg
