// The launchers of every CUDA attention kernel family, one per (family, direction), each a
// template over the storage type T and the head dim D.
//
// Each is defined in kernels/attention/<family>/<direction>.cuh and explicitly instantiated
// for the (T, D) pairs listed in kernels/attention/instantiations.cmake, one pair per
// generated file, so that the variants compile in parallel. dispatch.cu sees only these
// declarations and never compiles a kernel itself.
#pragma once
#include <cuda_runtime.h>

#include "kernels/attention/params.h"

namespace fg {
namespace attn {

// SIMT kernels: every dtype (f32, f64, bf16, f16), D in {32, 64, 96, 128}; and D = 256 except
// in f64 (whose dK/dV tiles would not fit in shared memory).
namespace simt {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream);
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream);
}  // namespace simt

// mma.sync kernels (sm_80 and later): the forward for bf16 and f16 at D 64, 96, 128 and 256 and
// for f32 (3xTF32) at 64 and 128, the backward for bf16 and f16 at 64, 96, 128 and 256.
namespace sm80 {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream);
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream);
}  // namespace sm80

// wgmma kernels (sm_90a), bf16 and f16: the forward at D = 64, the backward at D in {64, 128}.
namespace sm90 {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream);
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream);
}  // namespace sm90

// Warp-specialised wgmma kernels with TMA loads (sm_90a), bf16 and f16, D in {64, 128}: the
// forward (without block masks) and the backward (its deterministic calls run sm90's).
namespace sm90ws {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream);
template <typename T, int D> void run_backward(const AttentionParams& p, cudaStream_t stream);
}  // namespace sm90ws

// Split-KV decode kernel (forward only): f32, bf16 and f16 at D 32, 64 and 128, and bf16 and
// f16 at 256; a few query rows per kv head against a long cache.
namespace decode {
template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream);
}  // namespace decode

}  // namespace attn
}  // namespace fg
