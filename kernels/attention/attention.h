// The one header of kernels/attention/ that other layers include: the raw-pointer
// FlashAttention entry points (CPU and CUDA), their argument check, the backward workspace
// size, the CUDA kernel tables, the host-side block-mask builders, and through its includes the
// fp64 reference (cpu/reference.h) and the naive path's masks (naive/masks.h).
//
// Everything here works on an AttentionParams (kernels/attention/params.h, which also states
// the exact function computed, the layouts and the masking rules). The autograd node owns the
// tensors; these functions only read and write through the pointers.
//
// Folder: params.h (the maths), host.cpp (checks, workspace, block masks), dispatch.cu (the
// kernel tables and CUDA entry points), launchers.h + instantiations.cmake (one generated file
// per kernel variant), common/ (device pieces every CUDA family shares), simt/, sm80/, sm90/
// (the kernel families), cpu/ (the CPU flash path and the fp64 reference), naive/ (the masks of
// the materialising path).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/attention/cpu/reference.h"
#include "kernels/attention/naive/masks.h"
#include "kernels/attention/params.h"

#if defined(FLASHGRAD_WITH_CUDA) || defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

namespace fg {

// Checks sizes, pointers and options, throwing fg::Error that says what was wrong and what to
// do. Called by all four entry points. `backward` also requires do_, dq, dk, dv (and o, lse);
// `cuda` also requires a head dim the CUDA kernels take (attention_cuda_supports_head_dim; the
// CPU path accepts any D > 0).
void check_attention_params(const AttentionParams& p, bool backward = false, bool cuda = false);

// The head dims the CUDA kernels are compiled for: 32, 64, 96, 128, and 256 except in f64 (the
// tensor-core kernels take 64 and 128, and in bf16/f16 96 and 256 too; the split-KV decode
// kernel 32, 64 and 128, and 256 in bf16/f16; the SIMT kernels every one of them).
// attention_cuda_head_dims() says so, for error messages.
bool attention_cuda_supports_head_dim(int64_t D, DType dtype);
const char* attention_cuda_head_dims();

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
// Each runs the first kernel of its table below that can compute the call.
void flash_attention_forward_cuda(const AttentionParams& p, cudaStream_t stream = 0);
// Bytes of device memory the forward can use in p.split_workspace: non-zero only for calls the
// split-KV decode kernel takes and splits (sizes, dtype and pointers set; they decide).
size_t flash_attention_forward_workspace_bytes(const AttentionParams& p);
void flash_attention_backward_cuda(const AttentionParams& p, cudaStream_t stream = 0);

// What the kernel tables ask of a device: its compute capability major, the shared memory a
// block may opt in to, and whether this build carries sm_90a machine code (the wgmma and TMA
// kernels need both that and a 9.x device).
struct AttentionDevice {
  int major = 0;
  size_t smem_optin = 0;  // bytes (227 KB on sm_90, 99 KB on sm_86/89/120)
  bool sm90a = false;
};
// The calling thread's current device (cached per thread and device).
AttentionDevice attention_current_device();

// One CUDA attention kernel of a direction (for the backward, its whole launch sequence).
struct AttentionKernel {
  // "splitkv" (forward only: decode shapes, a few query rows against a long cache, keys split
  // across blocks), "tma" (the warp-specialised Hopper kernels, bf16/f16, D 64 and 128; the
  // forward without block masks, the backward only with FLASHGRAD_ATTENTION_TMA_BWD=1 when
  // chosen by the tables), "wgmma" (sm_90a warpgroup mma: bf16/f16; forward D 64, backward D 64
  // and 128), "mma" (mma.sync, sm_80+: bf16/f16, D 64, 96, 128 and 256), "3xtf32" (forward
  // only: f32 on tensor cores, D 64 and 128, about fp32 accuracy) or "simt" (every dtype and
  // head dim: the fallback).
  const char* name;
  // Whether it can compute p on device dev: dtype, head dim, alignment of pointers and
  // strides, compute capability. A rule only: it makes no CUDA call and reads no pointer.
  bool (*usable)(const AttentionParams& p, const AttentionDevice& dev);
  // Runs it (arguments already checked).
  void (*run)(const AttentionParams& p, cudaStream_t stream);
};
// The kernels of each direction in priority order (the SIMT one last).
const std::vector<AttentionKernel>& flash_attention_forward_kernels();
const std::vector<AttentionKernel>& flash_attention_backward_kernels();
// The name of the kernel flash_attention_forward_cuda(p) / _backward_cuda(p) runs: the first
// usable one, unless the environment says otherwise (read once, at the first call:
// FLASHGRAD_ATTENTION_SIMT=1 keeps to "simt", FLASHGRAD_ATTENTION_WGMMA=0 passes over "wgmma").
const char* flash_attention_forward_kernel(const AttentionParams& p);
const char* flash_attention_backward_kernel(const AttentionParams& p);
// The same choice for device dev: the tables' rules and the environment, no CUDA call (so the
// tests check the choice on machines without a GPU).
const char* flash_attention_forward_kernel(const AttentionParams& p, const AttentionDevice& dev);
const char* flash_attention_backward_kernel(const AttentionParams& p, const AttentionDevice& dev);
// Runs the kernel named `kernel` (environment aside), after the same argument check; throws
// fg::Error when no kernel has that name or it cannot compute p.
void flash_attention_forward_cuda_with(const char* kernel, const AttentionParams& p,
                                       cudaStream_t stream = 0);
void flash_attention_backward_cuda_with(const char* kernel, const AttentionParams& p,
                                        cudaStream_t stream = 0);
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
