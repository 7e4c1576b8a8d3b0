// CUDA entry points of the attention kernels: check the arguments, then dispatch on dtype and
// head dim to the launchers instantiated in kernels/attention/instantiations/.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/dispatch.h"
#include "kernels/attention/attention.h"
#include "kernels/attention/launchers.h"
#include "core/cuda_check.h"
#include "core/error.h"

namespace fg {

namespace {
// Calls f.template operator()<T, D>() for the runtime dtype and head dim (D in 32, 64, 128;
// check_attention_params has already rejected the others with a clear message).
template <typename T, typename F> void dispatch_head_dim(int64_t D, const char* who, F&& f) {
  switch (D) {
    case 32: f(T{}, std::integral_constant<int, 32>{}); break;
    case 64: f(T{}, std::integral_constant<int, 64>{}); break;
    case 128: f(T{}, std::integral_constant<int, 128>{}); break;
    default:
      throw Error(str(who, ": head dim D=", D, " is not supported (supported: 32, 64, 128)"));
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Whether the tensor-core forward can run this call: bf16/f16 (mma.sync m16n8k16) or f32
// (3xTF32, m16n8k8), D in {64, 128}, a GPU of compute capability 8.0 or later, 16-byte aligned
// rows (cp.async moves 16-byte chunks: pointers 16-byte aligned and every seq/head/batch stride
// a multiple of 16 bytes), a positive softmax scale (the kernels fold it into exp2), and no
// FLASHGRAD_ATTENTION_SIMT=1 in the environment (which forces the SIMT kernels, e.g. to compare
// the two paths).
bool tc_forward_usable(const AttentionParams& p) {
  if (p.dtype != DType::bf16 && p.dtype != DType::f16 && p.dtype != DType::f32) return false;
  if (p.D != 64 && p.D != 128) return false;
  const char* env = std::getenv("FLASHGRAD_ATTENTION_SIMT");
  if (env && env[0] != '\0' && std::strcmp(env, "0") != 0) return false;
  if (!(p.softmax_scale > 0.0) || !std::isfinite(p.softmax_scale)) return false;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return false;
  const int64_t chunk = p.dtype == DType::f32 ? 4 : 8;  // elements per 16 bytes
  for (int64_t s : {p.q_batch_stride, p.q_seq_stride, p.q_head_stride, p.k_batch_stride,
                    p.k_seq_stride, p.k_head_stride, p.v_batch_stride, p.v_seq_stride,
                    p.v_head_stride, p.o_batch_stride, p.o_seq_stride, p.o_head_stride})
    if (s % chunk != 0) return false;
  int dev = 0, major = 0;
  FG_CUDA_CHECK(cudaGetDevice(&dev));
  FG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major >= 8;
}

// The backward also reads dO with cp.async and writes dQ, dK, dV two elements at a time.
// Whether a 16-bit tensor-core kernel can use its Hopper (wgmma) form: a compute capability 9.x
// device, a build with sm_90a code, and FLASHGRAD_ATTENTION_WGMMA not set to 0 (which selects
// mma.sync, e.g. to compare the two). The forward has a wgmma kernel at D = 64 only (at D = 128
// the mma.sync forward measured faster); the backward at D = 64 and 128.
bool wgmma_usable(const AttentionParams& p) {
#if defined(FLASHGRAD_HAVE_SM90A)
  if (p.dtype != DType::bf16 && p.dtype != DType::f16) return false;
  const char* env = std::getenv("FLASHGRAD_ATTENTION_WGMMA");
  if (env && std::strcmp(env, "0") == 0) return false;
  int dev = 0, major = 0;
  FG_CUDA_CHECK(cudaGetDevice(&dev));
  FG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major == 9;
#else
  (void)p;
  return false;
#endif
}

bool wgmma_forward_usable(const AttentionParams& p) {
  return p.D == 64 && tc_forward_usable(p) && wgmma_usable(p);
}

// The tensor-core backward is 16-bit only (fp32 keeps the SIMT backward).
bool tc_backward_usable(const AttentionParams& p) {
  if (p.dtype != DType::bf16 && p.dtype != DType::f16) return false;
  if (!tc_forward_usable(p)) return false;
  if (!aligned16(p.do_) || !aligned16(p.dq) || !aligned16(p.dk) || !aligned16(p.dv)) return false;
  for (int64_t s : {p.do_batch_stride, p.do_seq_stride, p.do_head_stride, p.dq_batch_stride,
                    p.dq_seq_stride, p.dq_head_stride, p.dk_batch_stride, p.dk_seq_stride,
                    p.dk_head_stride, p.dv_batch_stride, p.dv_seq_stride, p.dv_head_stride})
    if (s % 8 != 0) return false;
  return true;
}
}  // namespace

bool flash_attention_forward_uses_tensor_cores(const AttentionParams& p) {
  return tc_forward_usable(p);
}

bool flash_attention_forward_uses_wgmma(const AttentionParams& p) {
  return wgmma_forward_usable(p);
}

bool flash_attention_backward_uses_tensor_cores(const AttentionParams& p) {
  return tc_backward_usable(p);
}

bool flash_attention_backward_uses_wgmma(const AttentionParams& p) {
  return tc_backward_usable(p) && wgmma_usable(p);
}

void flash_attention_forward_cuda(const AttentionParams& p, cudaStream_t stream) {
  check_attention_params(p, /*backward=*/false, /*cuda=*/true);
  if (tc_forward_usable(p)) {
    if (p.dtype == DType::f32) {
      if (p.D == 64) attn::sm80::run_forward<float, 64>(p, stream);
      else attn::sm80::run_forward<float, 128>(p, stream);
    } else if (wgmma_forward_usable(p)) {
      if (p.dtype == DType::bf16) attn::sm90::run_forward<bfloat16, 64>(p, stream);
      else attn::sm90::run_forward<float16, 64>(p, stream);
    } else if (p.dtype == DType::bf16) {
      if (p.D == 64) attn::sm80::run_forward<bfloat16, 64>(p, stream);
      else attn::sm80::run_forward<bfloat16, 128>(p, stream);
    } else {
      if (p.D == 64) attn::sm80::run_forward<float16, 64>(p, stream);
      else attn::sm80::run_forward<float16, 128>(p, stream);
    }
    return;
  }
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cuda", [&] {
    dispatch_head_dim<scalar_t>(p.D, "flash_attention_forward_cuda", [&](auto t, auto d) {
      attn::simt::run_forward<decltype(t), decltype(d)::value>(p, stream);
    });
  });
}

void flash_attention_backward_cuda(const AttentionParams& p, cudaStream_t stream) {
  check_attention_params(p, /*backward=*/true, /*cuda=*/true);
  if (tc_backward_usable(p)) {
    if (wgmma_usable(p)) {
      if (p.dtype == DType::bf16) {
        if (p.D == 64) attn::sm90::run_backward<bfloat16, 64>(p, stream);
        else attn::sm90::run_backward<bfloat16, 128>(p, stream);
      } else {
        if (p.D == 64) attn::sm90::run_backward<float16, 64>(p, stream);
        else attn::sm90::run_backward<float16, 128>(p, stream);
      }
    } else if (p.dtype == DType::bf16) {
      if (p.D == 64) attn::sm80::run_backward<bfloat16, 64>(p, stream);
      else attn::sm80::run_backward<bfloat16, 128>(p, stream);
    } else {
      if (p.D == 64) attn::sm80::run_backward<float16, 64>(p, stream);
      else attn::sm80::run_backward<float16, 128>(p, stream);
    }
    return;
  }
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_backward_cuda", [&] {
    dispatch_head_dim<scalar_t>(p.D, "flash_attention_backward_cuda", [&](auto t, auto d) {
      attn::simt::run_backward<decltype(t), decltype(d)::value>(p, stream);
    });
  });
}

}  // namespace fg
