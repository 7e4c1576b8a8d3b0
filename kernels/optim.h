// Optimizer kernels on raw pointers: the fused AdamW update, on the CPU and on CUDA.
//
// One call updates one parameter tensor in a single pass: gradient scaling (for clipping),
// decoupled weight decay, both moment updates, bias correction and the parameter step, plus
// (for 16-bit parameters) the fp32 master copy and its rounding back to the parameter dtype.
// The per-element arithmetic is adamw_update() below, shared by both devices, with every
// product and sum rounded separately (no fused multiply-add on the GPU), so the CPU and CUDA
// kernels give bit-identical results.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/dtype.h"

namespace fg {

// Per-step constants, computed once on the host in double and rounded to float.
struct AdamWArgs {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  // 1 - beta, computed in double: 1.0f - 0.999f in float would be off by 1e-5 relative.
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;
  float decay_factor = 1.0f;   // 1 - lr * weight_decay (1 where the tensor gets no decay)
  float step_size = 1e-3f;     // lr / (1 - beta1^t)
  float bias2_sqrt = 1.0f;     // sqrt(1 - beta2^t)
  float grad_scale = 1.0f;     // multiplies the gradient first (gradient clipping)

  // AdamW as in Loshchilov & Hutter (and torch.optim.AdamW) at step t >= 1.
  static AdamWArgs make(double lr, double beta1, double beta2, double eps, double weight_decay,
                        int64_t t, double grad_scale = 1.0) {
    AdamWArgs a;
    a.beta1 = float(beta1);
    a.beta2 = float(beta2);
    a.eps = float(eps);
    a.one_minus_beta1 = float(1.0 - beta1);
    a.one_minus_beta2 = float(1.0 - beta2);
    a.decay_factor = float(1.0 - lr * weight_decay);
    a.step_size = float(lr / (1.0 - std::pow(beta1, double(t))));
    a.bias2_sqrt = float(std::sqrt(1.0 - std::pow(beta2, double(t))));
    a.grad_scale = float(grad_scale);
    return a;
  }
};

// Correctly rounded float operations that the CUDA compiler may not contract into FMAs.
FG_HD float adamw_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FG_HD float adamw_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FG_HD float adamw_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
FG_HD float adamw_sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// One element: p (fp32 master value), g (gradient), m and v (the moments), updated in place.
FG_HD void adamw_update(float& p, float g, float& m, float& v, const AdamWArgs& a) {
  g = adamw_mul(g, a.grad_scale);
  p = adamw_mul(p, a.decay_factor);
  m = adamw_add(adamw_mul(a.beta1, m), adamw_mul(a.one_minus_beta1, g));
  v = adamw_add(adamw_mul(a.beta2, v), adamw_mul(a.one_minus_beta2, adamw_mul(g, g)));
  float denom = adamw_add(adamw_div(adamw_sqrt(v), a.bias2_sqrt), a.eps);
  p = adamw_add(p, -adamw_mul(a.step_size, adamw_div(m, denom)));
}

// One parameter tensor of a multi-tensor AdamW update: n contiguous elements of each.
struct AdamWTensor {
  void* param;
  float* master;  // null for f32 parameters
  const void* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t n;
};

// One tensor of a multi-tensor sum of squares.
struct SquaresTensor {
  const void* data;
  int64_t n;
};

// Elements per block in the multi-tensor kernels (and per fp32 partial sum in sum_squares, on
// both devices: the same partial sums, added in a fixed order).
constexpr int64_t kMultiTensorChunk = 8192;

// adamw: updates n contiguous elements. param and grad have param_dtype (f32, bf16 or f16);
// exp_avg and exp_avg_sq are fp32. For f32 parameters `master` must be null and param is
// updated directly; for 16-bit parameters `master` (fp32) is updated and param receives it
// rounded to param_dtype.
// adamw_multi: the same update for `count` tensors of one dtype and one args, in one launch
// per batch of tensors on CUDA (not one per tensor); bit-identical to calling adamw on each.
// sum_squares: the sum of squares of every element of `count` tensors of one dtype, each
// chunk of kMultiTensorChunk elements summed in float and the chunks' sums in double, into
// *out (a device pointer on CUDA). workspace: sum_squares_workspace() bytes.
#define FG_DECLARE_OPTIM_KERNELS                                                             \
  void adamw(DType param_dtype, int64_t n, void* param, float* master, const void* grad,     \
             float* exp_avg, float* exp_avg_sq, const AdamWArgs& args);                      \
  void adamw_multi(DType param_dtype, int count, const AdamWTensor* tensors,                 \
                   const AdamWArgs& args);                                                   \
  size_t sum_squares_workspace(int count, const SquaresTensor* tensors);                     \
  void sum_squares(DType dtype, int count, const SquaresTensor* tensors, double* out,        \
                   void* workspace);

namespace cpu {
FG_DECLARE_OPTIM_KERNELS
}
namespace cuda {
FG_DECLARE_OPTIM_KERNELS
}

}  // namespace fg
