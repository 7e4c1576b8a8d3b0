// Instantiates the CUDA attention forward for dtype f32, head dim 64 (one variant per file so
// that the kernels compile in parallel).
#include "kernels/attention/attention_kernels.cuh"
#include "kernels/attention/attention_launch.h"

namespace fg {
namespace attn {
template void run_attention_forward<float, 64>(const AttentionParams&, cudaStream_t);
}  // namespace attn
}  // namespace fg
