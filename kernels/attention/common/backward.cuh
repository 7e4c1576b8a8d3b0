// The launch sequence of the attention backward, the same for every kernel family, and its two
// small kernels. In three or four launches:
//   1. bwd_dot_kernel: D_i = rowsum(dO_i * O_i) into the workspace (one warp per row).
//   2. the family's dK/dV kernel: one block per key tile and kv head. Unless
//      params.deterministic, it also forms the block's dQ contribution dS K and adds it into an
//      accumulator in the workspace (zeroed first) with atomics, because several key tiles
//      contribute to each dQ row; the order of those adds varies from run to run, so dQ is not
//      bit-reproducible.
//   3a. bwd_dq_convert_kernel: accumulator -> dQ in the storage type, or, when deterministic,
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
  bwd_dot_kernel<T, D><<<unsigned((rows + 7) / 8), 256, 0, stream>>>(p, ws.Di);  // 8 warps
  FG_LAUNCH_CHECK();
  if (!p.deterministic) {
    FG_CUDA_CHECK(cudaMemsetAsync(ws.dq_accum, 0, size_t(rows) * D * sizeof(A), stream));
    launch_dkdv(std::true_type{}, ws.Di, ws.dq_accum);
    const int64_t n = rows * D;
    const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 65535));
    bwd_dq_convert_kernel<T, D><<<blocks, 256, 0, stream>>>(p, ws.dq_accum);
    FG_LAUNCH_CHECK();
  } else {
    launch_dkdv(std::false_type{}, ws.Di, static_cast<A*>(nullptr));
    launch_dq(ws.Di);
  }
}

}  // namespace attn
}  // namespace fg
