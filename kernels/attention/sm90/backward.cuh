// The wgmma (sm_90a) form of the tensor-core backward (see sm80/backward.cuh).
#pragma once
#include "kernels/attention/sm80/backward.cuh"

namespace fg {
namespace attn {
namespace sm90 {
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream) {
  tc::run_attention_tc_backward<T, D, true>(p, stream);
}
}  // namespace sm90
}  // namespace attn
}  // namespace fg
