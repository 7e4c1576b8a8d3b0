// The fused AdamW update on CUDA: one grid-stride pass per parameter tensor, the same
// per-element arithmetic as the CPU kernel (kernels/optim.h), so results are bit-identical.
#include "core/cuda_check.h"
#include "kernels/optim.h"

namespace fg::cuda {

namespace {

__global__ void adamw_f32_kernel(int64_t n, float* __restrict__ p, const float* __restrict__ g,
                                 float* __restrict__ m, float* __restrict__ v, AdamWArgs a) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_update(pi, g[i], mi, vi, a);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

template <typename T>
__global__ void adamw_half_kernel(int64_t n, T* __restrict__ p, float* __restrict__ master,
                                  const T* __restrict__ g, float* __restrict__ m,
                                  float* __restrict__ v, AdamWArgs a) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float pi = master[i], mi = m[i], vi = v[i];
    adamw_update(pi, float(g[i]), mi, vi, a);
    master[i] = pi;
    p[i] = T(pi);
    m[i] = mi;
    v[i] = vi;
  }
}

unsigned grid_for(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace

void adamw(DType param_dtype, int64_t n, void* param, float* master, const void* grad,
           float* exp_avg, float* exp_avg_sq, const AdamWArgs& args) {
  if (n == 0) return;
  constexpr int threads = 256;
  const unsigned grid = grid_for(n, threads);
  switch (param_dtype) {
    case DType::f32:
      FG_CHECK(master == nullptr, "adamw: fp32 parameters are their own master copy");
      adamw_f32_kernel<<<grid, threads>>>(n, static_cast<float*>(param),
                                          static_cast<const float*>(grad), exp_avg, exp_avg_sq,
                                          args);
      break;
    case DType::bf16:
      FG_CHECK(master != nullptr, "adamw: bf16 parameters need an fp32 master copy");
      adamw_half_kernel<bfloat16><<<grid, threads>>>(n, static_cast<bfloat16*>(param), master,
                                                     static_cast<const bfloat16*>(grad), exp_avg,
                                                     exp_avg_sq, args);
      break;
    case DType::f16:
      FG_CHECK(master != nullptr, "adamw: f16 parameters need an fp32 master copy");
      adamw_half_kernel<float16><<<grid, threads>>>(n, static_cast<float16*>(param), master,
                                                    static_cast<const float16*>(grad), exp_avg,
                                                    exp_avg_sq, args);
      break;
    default:
      throw Error(str("adamw: parameter dtype ", dtype_name(param_dtype),
                      " is not supported (use f32, or bf16/f16 with an fp32 master copy)"));
  }
  FG_LAUNCH_CHECK();
}

}  // namespace fg::cuda
