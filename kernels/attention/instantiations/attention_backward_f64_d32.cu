// Instantiates the CUDA attention backward for dtype f64, head dim 32 (one variant per file so
// that the kernels compile in parallel).
#include "kernels/attention/attention_kernels.cuh"
#include "kernels/attention/attention_launch.h"

namespace fg {
namespace attn {
template void run_attention_backward<double, 32>(const AttentionParams&, cudaStream_t);
}  // namespace attn
}  // namespace fg
