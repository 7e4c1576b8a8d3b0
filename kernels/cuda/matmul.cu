// CUDA batched GEMM through cuBLAS (cublasGemmStridedBatchedEx), on the calling thread's default
// stream.
//
// Contract (kernels/kernels.h): row-major C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b].
// cuBLAS is column-major. A row-major M x N matrix with row stride ld is, read column-major,
// its N x M transpose with the same ld, so the row-major product C = op(A) op(B) is computed
// as the column-major product C^T = op(B)^T op(A)^T: swap the operands (B first), swap M and
// N, and keep each operand's own transpose flag. No data moves.
//
// Precision: f32, bf16 and f16 use CUBLAS_COMPUTE_32F (fp32 accumulation), f64 uses
// CUBLAS_COMPUTE_64F. TF32 is NOT used for f32 by default, so f32 products match the CPU
// reference to ~1e-6 relative; set FLASHGRAD_ALLOW_TF32=1 in the environment to let f32
// products use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32; ~1e-3 relative error).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdlib>
#include <mutex>

#include "core/cuda_check.h"
#include "core/env.h"
#include "kernels/cuda/cublas_common.cuh"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg::cuda {

namespace {

// One handle for the process, made on first use (a function-local static is initialised
// exactly once even with concurrent callers). It is bound to cudaStreamPerThread, the calling
// thread's default stream, on which all flashgrad kernels run (cuBLAS itself was not built
// with per-thread default streams, so stream 0 would mean the legacy stream to it), and to
// the default math mode (no TF32 unless asked for).
cublasHandle_t cublas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    FG_CUBLAS_CHECK(cublasCreate(&h));
    FG_CUBLAS_CHECK(cublasSetStream(h, cudaStreamPerThread));
    FG_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    return h;
  }();
  return handle;
}


// C = beta * C (0 when beta == 0): the result of a product with K == 0.
template <typename T, typename A>
__global__ void scale_c_kernel(int64_t M, int64_t N, A beta, T* C, int64_t ldc, int64_t stride_c,
                               int64_t batch) {
  int64_t total = batch * M * N;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t n = e % N, m = (e / N) % M, b = e / (M * N);
    T& c = C[b * stride_c + m * ldc + n];
    c = beta == A(0) ? T(A(0)) : T(beta * A(c));
  }
}

// cuBLAS needs ld >= the stored row length (its "leading dimension"). An operand with a
// single stored row never uses its ld, so it may be raised; otherwise the caller is wrong.
int checked_ld(int64_t ld, int64_t stored_rows, int64_t stored_cols, const char* which) {
  int64_t need = stored_cols > 1 ? stored_cols : 1;
  if (ld < need) {
    FG_CHECK(stored_rows <= 1, "gemm (cuda): ", which, " has row stride ", ld,
             " smaller than its row length ", stored_cols,
             "; pass a contiguous or transposed-contiguous operand");
    ld = need;
  }
  FG_CHECK(ld <= INT_MAX, "gemm (cuda): ", which, " row stride ", ld,
           " exceeds cuBLAS's 32-bit limit");
  return int(ld);
}

}  // namespace

bool allow_tf32() {
  static const bool on = env_flag("FLASHGRAD_ALLOW_TF32");
  return on;
}

void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          double alpha, const void* A, int64_t lda, int64_t stride_a, const void* B,
          int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc, int64_t stride_c,
          int64_t batch) {
  FG_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, "gemm (cuda): negative size (M=", M,
           ", N=", N, ", K=", K, ", batch=", batch, ")");
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {
    FG_DISPATCH_FLOAT(dtype, "gemm", [&] {
      using Acc = typename acc_type<scalar_t>::type;
      int64_t total = batch * M * N;
      int blocks = int((total + 255) / 256 < 65535 ? (total + 255) / 256 : 65535);
      scale_c_kernel<scalar_t, Acc><<<blocks, 256>>>(M, N, Acc(beta), static_cast<scalar_t*>(C),
                                                      ldc, stride_c, batch);
      FG_LAUNCH_CHECK();
    });
    return;
  }
  FG_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && batch <= INT_MAX,
           "gemm (cuda): sizes M=", M, ", N=", N, ", K=", K, ", batch=", batch,
           " exceed cuBLAS's 32-bit limit; split the product");
  int ilda = checked_ld(lda, trans_a ? K : M, trans_a ? M : K, "A");
  int ildb = checked_ld(ldb, trans_b ? N : K, trans_b ? K : N, "B");
  int ildc = checked_ld(ldc, M, N, "C");

  cudaDataType_t type;
  cublasComputeType_t compute;
  switch (dtype) {
    case DType::f32:
      type = CUDA_R_32F;
      compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    case DType::f64: type = CUDA_R_64F; compute = CUBLAS_COMPUTE_64F; break;
    case DType::bf16: type = CUDA_R_16BF; compute = CUBLAS_COMPUTE_32F; break;
    case DType::f16: type = CUDA_R_16F; compute = CUBLAS_COMPUTE_32F; break;
    default:
      throw Error(str("gemm (cuda): dtype ", dtype_name(dtype),
                      " is not supported (use f32, f64, bf16 or f16)"));
  }
  // alpha and beta live on the host, in the compute type's precision.
  float alpha_f = float(alpha), beta_f = float(beta);
  const void* palpha = dtype == DType::f64 ? static_cast<const void*>(&alpha)
                                           : static_cast<const void*>(&alpha_f);
  const void* pbeta = dtype == DType::f64 ? static_cast<const void*>(&beta)
                                          : static_cast<const void*>(&beta_f);
  cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Column-major C^T (N x M) = op(B)^T (N x K) * op(A)^T (K x M).
  FG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      cublas_handle(), op_b, op_a, int(N), int(M), int(K), palpha, B, type, ildb,
      (long long)stride_b, A, type, ilda, (long long)stride_a, pbeta, C, type, ildc,
      (long long)stride_c, int(batch), compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace fg::cuda
