// Declarations of the per-(dtype, head dim) CUDA attention launchers.
//
// The definitions live in attention_kernels.cuh and are explicitly instantiated, one
// (direction, dtype, head dim) per file, in kernels/attention/instantiations/; the entry points
// in attention_cuda.cu only see these declarations, so they do not compile the kernels again.
#pragma once
#include <cuda_runtime.h>

#include "kernels/attention/params.h"

namespace fg {
namespace attn {

template <typename T, int D> void run_attention_forward(const AttentionParams& p, cudaStream_t stream);
template <typename T, int D> void run_attention_backward(const AttentionParams& p, cudaStream_t stream);

namespace tc {
// Tensor-core (mma.sync) forward for T in {bfloat16, float16}, D in {64, 128}
// (attention_tc_forward.cuh, instantiated in instantiations/attention_tc_forward_*.cu).
template <typename T, int D> void run_attention_tc_forward(const AttentionParams& p, cudaStream_t stream);
// Hopper forward (wgmma, sm_90a), bf16/f16, D = 64 (attention_wgmma_forward.cuh,
// instantiated in instantiations/attention_wgmma_forward_*.cu).
template <typename T, int D> void run_attention_wgmma_forward(const AttentionParams& p, cudaStream_t stream);
// fp32 forward on tensor cores (3xTF32), D in {64, 128} (attention_tc_forward.cuh, instantiated
// in instantiations/attention_tc_forward_f32_*.cu).
template <int D> void run_attention_tf32x3_forward(const AttentionParams& p, cudaStream_t stream);
// Tensor-core backward, same types and head dims (attention_tc_backward.cuh, instantiated in
// instantiations/attention_tc_backward_*.cu); `wgmma` (sm_90a builds on a 9.x device)
// takes the wgmma variant of the dK/dV kernel.
template <typename T, int D>
void run_attention_tc_backward(const AttentionParams& p, bool wgmma, cudaStream_t stream);
}  // namespace tc

}  // namespace attn
}  // namespace fg
