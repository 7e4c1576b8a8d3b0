// Host side of the TMA loads: a tensor map (CUtensorMap) over one operand of an attention
// call, [B, N, H, D] with the call's element strides, read in boxes of 64 columns (128 bytes
// of a 16-bit row, the widest box the 128-byte swizzle takes) by `rows` rows of one head.
//
// cuTensorMapEncodeTiled is a driver API function; it is looked up through the runtime
// (cudaGetDriverEntryPointByVersion), so the library still links against the runtime alone.
#pragma once
#include <cuda.h>  // CUtensorMap and the encode function's enums (types only)
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"

namespace fg {
namespace attn {

using TensorMapEncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*,
                                          const cuuint64_t*, const cuuint64_t*,
                                          const cuuint32_t*, const cuuint32_t*,
                                          CUtensorMapInterleave, CUtensorMapSwizzle,
                                          CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

inline TensorMapEncodeTiled tensor_map_encoder() {
  static const TensorMapEncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    FG_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000,
                                                   cudaEnableDefault, &found));
    FG_CHECK(found == cudaDriverEntryPointSuccess && f != nullptr,
             "flash attention: the CUDA driver has no cuTensorMapEncodeTiled (needs a driver for "
             "CUDA 12 or later); set FLASHGRAD_ATTENTION_TMA=0 to use the other kernels");
    return reinterpret_cast<TensorMapEncodeTiled>(f);
  }();
  return fn;
}

// The map of a 16-bit [B, N, H, D] operand at `base` with element strides (batch, seq, head),
// boxes of 64 x `rows`, 128-byte swizzle, zeros outside the tensor. A dim of size 1 may come
// with any stride (the layer passes 0 for some); it never moves, so it gets a harmless one.
inline CUtensorMap head_tensor_map(const void* base, int64_t B, int64_t N, int64_t H, int64_t D,
                                   int64_t batch_stride, int64_t seq_stride, int64_t head_stride,
                                   uint32_t rows) {
  auto bytes = [](int64_t stride, int64_t size) {
    const int64_t b = stride * 2;
    return cuuint64_t(size == 1 && (b <= 0 || b % 16 != 0) ? 16 : b);
  };
  const cuuint64_t dims[4] = {cuuint64_t(D), cuuint64_t(N), cuuint64_t(H), cuuint64_t(B)};
  const cuuint64_t strides[3] = {bytes(seq_stride, N), bytes(head_stride, H),
                                 bytes(batch_stride, B)};
  const cuuint32_t box[4] = {64, rows, 1, 1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  CUtensorMap map;
  const CUresult r = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 4, const_cast<void*>(base), dims, strides, box, unit,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  FG_CHECK(r == CUDA_SUCCESS, "flash attention: cuTensorMapEncodeTiled failed (error ", int(r),
           ") for a [", B, ", ", N, ", ", H, ", ", D, "] operand with element strides (", batch_stride,
           ", ", seq_stride, ", ", head_stride,
           "); set FLASHGRAD_ATTENTION_TMA=0 to use the other kernels");
  return map;
}

}  // namespace attn
}  // namespace fg
