// Instantiates the tensor-core attention backward for dtype f16, head dim 64 (one variant per
// file so that the kernels compile in parallel).
#include "kernels/attention/attention_launch.h"
#include "kernels/attention/attention_tc_backward.cuh"

namespace fg {
namespace attn {
namespace tc {
template void run_attention_tc_backward<fg::float16, 64>(const AttentionParams&, bool, cudaStream_t);
}  // namespace tc
}  // namespace attn
}  // namespace fg
