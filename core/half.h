// bfloat16 and float16 storage types usable on the host and in CUDA kernels.
//
// Both are 16-bit patterns with explicit conversions to and from float. Arithmetic always
// happens in float (the "accumulate in fp32" rule), so these types only need to convert.
// Conversions round to nearest even, matching __float2bfloat16 and __float2half.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FG_HD __host__ __device__ __forceinline__
#else
#define FG_HD inline
#endif

namespace fg {

FG_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
FG_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

struct bfloat16 {
  uint16_t bits = 0;
  bfloat16() = default;
  FG_HD explicit bfloat16(float f) : bits(from_float(f)) {}
  FG_HD explicit operator float() const { return bits_float(uint32_t(bits) << 16); }
  FG_HD static uint16_t from_float(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return uint16_t((u + rounding) >> 16);
  }
};

struct float16 {
  uint16_t bits = 0;
  float16() = default;
  FG_HD explicit float16(float f) : bits(from_float(f)) {}
  FG_HD explicit operator float() const { return to_float(bits); }

  FG_HD static float to_float(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
    if (exp == 0) {
      if (mant == 0) return bits_float(sign);
      // Subnormal: value = mant * 2^-24.
      float v = float(mant) * 5.9604644775390625e-8f;
      return sign ? -v : v;
    }
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  }
  FG_HD static uint16_t from_float(float f) {
    uint32_t u = float_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);        // NaN
    if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);       // overflow to inf
    if (abs < 0x38800000u) {                                        // subnormal or zero
      // Scale so that the subnormal step 2^-24 becomes 1, then round to nearest even.
      float a = bits_float(abs) * 16777216.0f;
      uint32_t m = uint32_t(a);
      float rem = a - float(m);
      if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
      return uint16_t(sign | m);
    }
    uint32_t rounding = 0xfffu + ((abs >> 13) & 1u);
    abs += rounding;
    return uint16_t(sign | ((abs - 0x38000000u) >> 13));
  }
};

}  // namespace fg
