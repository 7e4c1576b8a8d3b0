// Instantiates the fp32 (3xTF32) tensor-core attention forward for head dim 64.
#include "kernels/attention/attention_launch.h"
#include "kernels/attention/attention_tc_forward.cuh"

namespace fg {
namespace attn {
namespace tc {
template void run_attention_tf32x3_forward<64>(const AttentionParams&, cudaStream_t);
}  // namespace tc
}  // namespace attn
}  // namespace fg
