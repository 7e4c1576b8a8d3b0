// The raw-pointer FlashAttention entry points (CPU and CUDA), their argument check, the
// backward workspace size and the host-side block-mask builders.
//
// Everything here works on an AttentionParams (kernels/attention/params.h, which also states
// the exact function computed, the layouts and the masking rules). The autograd node owns the
// tensors; these functions only read and write through the pointers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/attention/naive/masks.h"
#include "kernels/attention/params.h"

#if defined(FLASHGRAD_WITH_CUDA) || defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

namespace fg {

// Checks sizes, pointers and options, throwing fg::Error that says what was wrong and what to
// do. Called by all four entry points. `backward` also requires do_, dq, dk, dv (and o, lse);
// `cuda` also requires D in {32, 64, 128} (the CPU path accepts any D > 0).
void check_attention_params(const AttentionParams& p, bool backward = false, bool cuda = false);

// The head dims the CUDA kernels are compiled for.
bool attention_cuda_supports_head_dim(int64_t D);

// CPU flash attention: tiled 64 x 64, online softmax, no N x N buffer; threads over (b, head),
// deterministic. Pointers are host pointers.
void flash_attention_forward_cpu(const AttentionParams& p);
void flash_attention_backward_cpu(const AttentionParams& p);

// Bytes of device memory the CUDA backward needs in p.workspace: D_i [B, Hq, Nq] and, unless
// p.deterministic, the dQ accumulator [B, Hq, Nq, D], in fp32 (fp64 for f64), each padded to
// 256 bytes. The backward initialises it itself.
size_t flash_attention_backward_workspace_bytes(const AttentionParams& p);

#if defined(FLASHGRAD_WITH_CUDA) || defined(__CUDACC__)
// CUDA flash attention (pointers are device pointers, block_mask too). Asynchronous on `stream`.
void flash_attention_forward_cuda(const AttentionParams& p, cudaStream_t stream = 0);
void flash_attention_backward_cuda(const AttentionParams& p, cudaStream_t stream = 0);
// Whether flash_attention_forward_cuda(p) takes a tensor-core kernel rather than the SIMT one:
// bf16/f16 (mma.sync) or f32 (3xTF32: about fp32 accuracy), D in {64, 128}, sm_80+, 16-byte
// aligned rows, and FLASHGRAD_ATTENTION_SIMT unset (or 0). Queries the current device.
bool flash_attention_forward_uses_tensor_cores(const AttentionParams& p);
// Whether that tensor-core forward is the Hopper one (wgmma: bf16/f16, D = 64, a 9.x device, a
// build with sm_90a code) rather than mma.sync; FLASHGRAD_ATTENTION_WGMMA=0 turns it off.
bool flash_attention_forward_uses_wgmma(const AttentionParams& p);
// The same for flash_attention_backward_cuda(p): bf16/f16 only, the forward's conditions, and
// dO, dQ, dK, dV 16-byte aligned with strides that are multiples of 8 elements.
bool flash_attention_backward_uses_tensor_cores(const AttentionParams& p);
// Whether that backward's dK/dV kernel is the wgmma form (the forward's conditions, but D = 64
// or 128).
bool flash_attention_backward_uses_wgmma(const AttentionParams& p);
#endif

// Block masks, [ceil(Nq/64), ceil(Nk/64)] with head count 1 (set block_mask_heads = 1).
//
// Sliding window: query i (at key position i + Nk - Nq, the same bottom-right alignment as
// causal) wants keys j with |pos - j| <= window, or pos - window <= j <= pos when `causal`.
// The mask keeps every 64 x 64 tile holding at least one such pair, so visibility is
// tile-granular; combine with params.causal = true for the exact diagonal.
std::vector<uint8_t> sliding_window_block_mask(int64_t Nq, int64_t Nk, int64_t window,
                                               bool causal);
// Global + local (Longformer-like): the sliding window above (not causal) plus every tile that
// holds a global key (j < num_global_tokens) or a global query (pos < num_global_tokens).
std::vector<uint8_t> global_local_block_mask(int64_t Nq, int64_t Nk, int64_t num_global_tokens,
                                             int64_t window);

}  // namespace fg
