// Instantiates the tensor-core attention backward for dtype bf16, head dim 128 (one variant per
// file so that the kernels compile in parallel).
#include "kernels/attention/attention_launch.h"
#include "kernels/attention/attention_tc_backward.cuh"

namespace fg {
namespace attn {
namespace tc {
template void run_attention_tc_backward<fg::bfloat16, 128>(const AttentionParams&, bool, cudaStream_t);
}  // namespace tc
}  // namespace attn
}  // namespace fg
