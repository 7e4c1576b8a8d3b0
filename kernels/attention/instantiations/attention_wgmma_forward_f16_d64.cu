// Instantiates the wgmma (sm_90a) attention forward for dtype f16, head dim 64.
#include "kernels/attention/attention_launch.h"
#include "kernels/attention/attention_wgmma_forward.cuh"

namespace fg {
namespace attn {
namespace tc {
template void run_attention_wgmma_forward<fg::float16, 64>(const AttentionParams&, cudaStream_t);
}  // namespace tc
}  // namespace attn
}  // namespace fg
