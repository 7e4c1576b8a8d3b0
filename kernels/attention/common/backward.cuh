// The launch sequence of the attention backward, the same for every kernel family, and its
// small kernels. In three or four launches:
//   1. bwd_prep_kernel: D_i = rowsum(dO_i * O_i) into the workspace, and the dQ accumulator's
//      rows zeroed in the same pass (16-byte vectors, a group of lanes per row); tensors whose
//      rows are not 16-byte aligned, and f64, take bwd_dot_kernel (one warp per row, one element
//      a lane) and a memset instead.
//   2. the family's dK/dV kernel: one block per key tile and kv head. Unless
//      params.deterministic, it also forms the block's dQ contribution dS K and adds it into an
//      accumulator in the workspace (zeroed first) with atomics, because several key tiles
//      contribute to each dQ row; the order of those adds varies from run to run, so dQ is not
//      bit-reproducible.
//   3a. bwd_dq_convert_kernel: accumulator -> dQ in the storage type (the vector form as in 1,
//      bwd_dq_convert_vec_kernel, where step 1 took it), or, when deterministic,
//   3b. the family's dQ kernel: one block per query tile recomputes P and dS for its rows and
//      sums dQ in registers in a fixed order: no atomics, bit-reproducible, at the price of
//      computing S and dP twice.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/cuda_reduce.cuh"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/numeric.cuh"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {

// D_i = rowsum(dO_i * O_i), one warp per (b, h, i) row, into Di [B, Hq, Nq].
template <typename T, int D>
__global__ void bwd_dot_kernel(const AttentionParams p, typename Acc<T>::type* Di) {
  using A = typename Acc<T>::type;
  const int lane = int(threadIdx.x) % 32;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= p.B * p.Hq * p.Nq) return;  // whole warps leave together
  const int64_t i = row % p.Nq, h = (row / p.Nq) % p.Hq, b = row / (p.Nq * p.Hq);
  const T* o = p.o_head<const T>(b, h) + i * p.o_seq_stride;
  const T* dO = p.do_head<const T>(b, h) + i * p.do_seq_stride;
  A sum = 0;
#pragma unroll
  for (int t = 0; t < D / 32; ++t)
    sum += load_acc(o + lane + 32 * t) * load_acc(dO + lane + 32 * t);
  sum = warp_sum(sum);
  if (lane == 0) Di[row] = sum;
}

// dQ (storage type, strided) <- the accumulator [B, Hq, Nq, D].
template <typename T, int D>
__global__ void bwd_dq_convert_kernel(const AttentionParams p,
                                      const typename Acc<T>::type* dq_accum) {
  const int64_t n = p.B * p.Hq * p.Nq * D;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = e % D, i = (e / D) % p.Nq, h = (e / (D * p.Nq)) % p.Hq,
                  b = e / (D * p.Nq * p.Hq);
    store_acc(p.dq_head<T>(b, h) + i * p.dq_seq_stride + d, dq_accum[e]);
  }
}

// The vector form of steps 1 and 3a: a row of D elements of T is kVecs 16-byte vectors, read
// by a group of kGroup lanes (a power of two, up to 32; lanes past kVecs idle), 32 / kGroup rows
// a warp, 8 warps a block. kUsable: D elements of T fill whole vectors.
template <typename T, int D> struct RowVectors {
  static constexpr int kVec = 16 / int(sizeof(T));
  static constexpr bool kUsable = sizeof(T) <= 4 && D % kVec == 0;
  static constexpr int kVecs = kUsable ? D / kVec : 1;
  static constexpr int kGroup = kVecs >= 32 ? 32 : kVecs > 8 ? 16 : kVecs > 4 ? 8 : kVecs > 2 ? 4
                                : kVecs > 1 ? 2 : 1;
  static constexpr int kRowsPerBlock = 8 * (32 / kGroup);
  static unsigned blocks(int64_t rows) { return unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock); }
  // This thread's row and its lane within the row's group.
  FG_ATTN_DEV static int64_t row() {
    const int lane = int(threadIdx.x) % 32;
    return int64_t(blockIdx.x) * kRowsPerBlock + int64_t(threadIdx.x / 32) * (32 / kGroup) +
           lane / kGroup;
  }
  FG_ATTN_DEV static int group_lane() { return int(threadIdx.x) % kGroup; }
};

// Whether every row of a [B, N, H, D] tensor of T at base, with these strides (elements),
// starts on a 16-byte boundary.
template <typename T>
inline bool rows_vector_aligned(const void* base, int64_t batch, int64_t head, int64_t seq) {
  constexpr int64_t kVec = 16 / int64_t(sizeof(T));
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && batch % kVec == 0 && head % kVec == 0 &&
         seq % kVec == 0;
}

// The (b, h, i) of row `row` of [B, Hq, Nq] (32-bit divisions where the sizes allow: a 64-bit
// one is a long integer routine).
FG_ATTN_DEV void split_row(const AttentionParams& p, int64_t row, int64_t& b, int64_t& h,
                           int64_t& i) {
  if (p.B * p.Hq * p.Nq <= int64_t(UINT32_MAX)) {
    const uint32_t r = uint32_t(row), nq = uint32_t(p.Nq), hq = uint32_t(p.Hq);
    const uint32_t bh = r / nq;
    i = int64_t(r - bh * nq), h = int64_t(bh % hq), b = int64_t(bh / hq);
  } else {
    const int64_t bh = row / p.Nq;
    i = row - bh * p.Nq, h = bh % p.Hq, b = bh / p.Hq;
  }
}

// Step 1, vector form: D_i = rowsum(dO_i * O_i) into Di [B, Hq, Nq], and the row of dq_accum
// [B, Hq, Nq, D] zeroed (unless null: the deterministic backward has none).
template <typename T, int D>
__global__ void __launch_bounds__(256) bwd_prep_kernel(const AttentionParams p, float* Di,
                                                       float* dq_accum) {
  using V = RowVectors<T, D>;
  const int gl = V::group_lane();
  const int64_t row = V::row();
  const bool valid = row < p.B * p.Hq * p.Nq;
  float sum = 0.f;
  if (valid) {
    int64_t b, h, i;
    split_row(p, row, b, h, i);
    const uint4* o = reinterpret_cast<const uint4*>(p.o_head<const T>(b, h) + i * p.o_seq_stride);
    const uint4* dO =
        reinterpret_cast<const uint4*>(p.do_head<const T>(b, h) + i * p.do_seq_stride);
    uint4 ov[(V::kVecs + V::kGroup - 1) / V::kGroup], dv[(V::kVecs + V::kGroup - 1) / V::kGroup];
#pragma unroll
    for (int k = 0; k < (V::kVecs + V::kGroup - 1) / V::kGroup; ++k) {  // every load first
      const int v = gl + k * V::kGroup;
      if (v < V::kVecs) ov[k] = __ldg(o + v), dv[k] = __ldg(dO + v);
    }
    if (dq_accum) {
      float4* acc = reinterpret_cast<float4*>(dq_accum + row * D);
      for (int c = gl; c < D / 4; c += V::kGroup) acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int k = 0; k < (V::kVecs + V::kGroup - 1) / V::kGroup; ++k) {
      if (gl + k * V::kGroup >= V::kVecs) continue;
      const T* oe = reinterpret_cast<const T*>(&ov[k]);
      const T* de = reinterpret_cast<const T*>(&dv[k]);
#pragma unroll
      for (int e = 0; e < V::kVec; ++e) sum += load_acc(oe + e) * load_acc(de + e);
    }
  }
#pragma unroll
  for (int off = V::kGroup / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (valid && gl == 0) Di[row] = sum;
}

// Step 3a, vector form: dQ (storage type, strided) <- dq_accum [B, Hq, Nq, D].
template <typename T, int D>
__global__ void __launch_bounds__(256) bwd_dq_convert_vec_kernel(const AttentionParams p,
                                                                 const float* dq_accum) {
  using V = RowVectors<T, D>;
  const int gl = V::group_lane();
  const int64_t row = V::row();
  if (row >= p.B * p.Hq * p.Nq) return;
  int64_t b, h, i;
  split_row(p, row, b, h, i);
  uint4* dq = reinterpret_cast<uint4*>(p.dq_head<T>(b, h) + i * p.dq_seq_stride);
  const float4* acc = reinterpret_cast<const float4*>(dq_accum + row * D);
  for (int v = gl; v < V::kVecs; v += V::kGroup) {
    float x[V::kVec];
#pragma unroll
    for (int c = 0; c < V::kVec / 4; ++c) {
      const float4 a = __ldg(acc + v * (V::kVec / 4) + c);
      x[4 * c] = a.x, x[4 * c + 1] = a.y, x[4 * c + 2] = a.z, x[4 * c + 3] = a.w;
    }
    uint4 out;
    T* oe = reinterpret_cast<T*>(&out);
#pragma unroll
    for (int e = 0; e < V::kVec; ++e) store_acc(oe + e, x[e]);
    dq[v] = out;
  }
}

// Runs steps 1 to 3 (see the file comment) with A the accumulation type of the family (fp32,
// or fp64 for the f64 SIMT kernels). launch_dkdv(std::bool_constant<atomic_dq>, Di, dq_accum)
// launches the dK/dV kernel (dq_accum is null when deterministic); launch_dq(Di) the
// deterministic dQ kernel.
template <typename T, int D, typename A, typename LaunchDkdv, typename LaunchDq>
void run_backward_sequence(const AttentionParams& p, cudaStream_t stream, LaunchDkdv launch_dkdv,
                           LaunchDq launch_dq) {
  check_grid(p, "flash_attention_backward_cuda");
  const int64_t rows = p.B * p.Hq * p.Nq;
  const BackwardWorkspace<A> ws(p);
  A* dq_accum = p.deterministic ? nullptr : ws.dq_accum;
  constexpr bool kVectorForm = RowVectors<T, D>::kUsable && std::is_same_v<A, float>;
  bool vec = false;
  if constexpr (kVectorForm) {
    vec = ws.dq_accum_aligned16() &&
          rows_vector_aligned<T>(p.o, p.o_batch_stride, p.o_head_stride, p.o_seq_stride) &&
          rows_vector_aligned<T>(p.do_, p.do_batch_stride, p.do_head_stride, p.do_seq_stride) &&
          (p.deterministic ||
           rows_vector_aligned<T>(p.dq, p.dq_batch_stride, p.dq_head_stride, p.dq_seq_stride));
    if (vec) {
      bwd_prep_kernel<T, D><<<RowVectors<T, D>::blocks(rows), 256, 0, stream>>>(p, ws.Di, dq_accum);
      FG_LAUNCH_CHECK();
    }
  }
  if (!vec) {
    bwd_dot_kernel<T, D><<<unsigned((rows + 7) / 8), 256, 0, stream>>>(p, ws.Di);  // 8 warps
    FG_LAUNCH_CHECK();
    if (dq_accum)
      FG_CUDA_CHECK(cudaMemsetAsync(dq_accum, 0, size_t(rows) * D * sizeof(A), stream));
  }
  if (!p.deterministic) {
    launch_dkdv(std::true_type{}, ws.Di, dq_accum);
    if constexpr (kVectorForm) {
      if (vec) {
        bwd_dq_convert_vec_kernel<T, D>
            <<<RowVectors<T, D>::blocks(rows), 256, 0, stream>>>(p, dq_accum);
        FG_LAUNCH_CHECK();
        return;
      }
    }
    const int64_t n = rows * D;
    const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65535));
    bwd_dq_convert_kernel<T, D><<<blocks, 256, 0, stream>>>(p, dq_accum);
    FG_LAUNCH_CHECK();
  } else {
    launch_dkdv(std::false_type{}, ws.Di, static_cast<A*>(nullptr));
    launch_dq(ws.Di);
  }
}

}  // namespace attn
}  // namespace fg
