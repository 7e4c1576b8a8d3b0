// What the two decode kernels (forward.cuh, cluster.cuh) share: the lanes' division of a key,
// the 16-byte unpacking, and which query row a block row is.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/numeric.cuh"
#include "kernels/attention/decode/splits.h"

namespace fg {
namespace attn {
namespace decode {

template <typename T, int D> struct Shape {
  static constexpr int kVec = 16 / int(sizeof(T));          // elements per 16-byte load
  static constexpr int kLanesPerKey = D / kVec;             // lanes that share one key
  static constexpr int kGroups = kThreads / kLanesPerKey;   // keys a block reads at once
  static_assert(kLanesPerKey >= 1 && kLanesPerKey <= 32 && 32 % kLanesPerKey == 0,
                "a key's lanes must lie within one warp");
};

// Eight 16-bit or four 32-bit elements of a 16-byte word, as float.
template <typename T, int N> FG_ATTN_DEV void unpack(const uint4& w, float (&out)[N]) {
  if constexpr (std::is_same_v<T, float>) {
    out[0] = __uint_as_float(w.x), out[1] = __uint_as_float(w.y);
    out[2] = __uint_as_float(w.z), out[3] = __uint_as_float(w.w);
  } else {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, float16>) {
        out[2 * i] = __half2float(__ushort_as_half(uint16_t(words[i] & 0xffffu)));
        out[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(words[i] >> 16)));
      } else {  // bf16: the high half of an fp32
        out[2 * i] = __uint_as_float(words[i] << 16);
        out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      }
    }
  }
}

// Row r (0 .. decode_rows - 1) of kv head hk: new token qi of query head h.
struct Row {
  int64_t h, qi;
};
FG_ATTN_DEV Row row_of(const AttentionParams& p, int64_t hk, int64_t r) {
  const int64_t group = p.Hq / p.Hkv;
  return {hk * group + r % group, r / group};
}

}  // namespace decode
}  // namespace attn
}  // namespace fg
