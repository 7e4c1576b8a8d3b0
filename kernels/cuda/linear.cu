// CUDA linear layer through cuBLASLt, with the bias, the GELU and the bias gradient done by the
// GEMM's epilogue instead of separate passes over the output.
//
// Contract (kernels/kernels.h): y [M, N] = x [M, K] w^T + bias, then GELU (pre = its input);
// gw [N, K] = gy^T x and gb = column sums of gy. All operands contiguous row-major.
//
// cuBLASLt is column-major, so each row-major matrix is read as its transpose (same pointer,
// ld = its row length):
//   forward      y^T (N x M) = op_T(w: K x N stored) * x^T (K x M stored)
//                epilogue BIAS / GELU_BIAS / GELU_AUX_BIAS: bias[N] per output feature, aux
//                (= pre) the GELU's input
//   weight grad  gw^T (K x N) = x^T (K x M stored) * op_T(gy: N x M stored)
//                epilogue BGRADB: gb[N] = op(B) summed over the k (= M) dimension
//   input grad   gx^T (K x M) = w (K x N stored) * gy^T (N x M stored)
//                epilogue DGELU / DGELU_BGRAD: times gelu'(aux = pre), and gb[K] = the
//                result summed over its M columns (the previous layer's bias gradient)
// cuBLASLt's GELU is the tanh approximation, flashgrad's GELU (kernels/kernels.h). Bias and
// GELU act on the fp32 accumulator; y, pre and gb are rounded once.
//
// A plan (descriptors, layouts and the heuristic's algorithm) is made once per shape, dtype,
// epilogue and operand alignment and kept for the process; a call sets the pointers and runs.
// cuBLASLt runs only the products with an epilogue; plain ones go to gemm() (cuBLAS). When
// cuBLASLt has no algorithm for a case (f64, a pre row length not a multiple of 8, ...) the
// product goes through gemm() and a small kernel applies bias and GELU (or the elementwise
// gelu_backward); bias gradients then come from reduce().
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <mutex>
#include <tuple>

#include "core/cuda_check.h"
#include "core/env.h"
#include "kernels/common/elementwise_math.h"
#include "kernels/cuda/cublas_common.cuh"
#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {

namespace {

constexpr size_t kLtWorkspace = size_t(32) << 20;  // cuBLAS's recommendation for Hopper
constexpr size_t kMaxPlans = 512;
std::atomic<uint64_t> g_lt_launches{0};

bool lt_dtype(DType dt) { return dt == DType::bf16 || dt == DType::f16 || dt == DType::f32; }

cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t handle = [] {
    cublasLtHandle_t h = nullptr;
    FG_CUBLAS_CHECK(cublasLtCreate(&h));
    return h;
  }();
  return handle;
}

// The input gradient's GELU derivative and bias gradient go to cuBLASLt's DGELU_BGRAD epilogue
// only with FLASHGRAD_DGELU_EPILOGUE=1 (read once). Measured on an H200 (bench/RESULTS.md), it
// made the gpt12 step 37.2 ms against 34.2 ms with gemm(), the elementwise gelu_backward and a
// column sum, which is therefore the default.
bool dgelu_epilogue() {
  static const bool on = env_flag("FLASHGRAD_DGELU_EPILOGUE");
  return on;
}

enum class Epi : int { none, bias, gelu, gelu_bias, gelu_aux, gelu_aux_bias, bgradb, dgelu,
                       dgelu_bgrad };

cublasLtEpilogue_t lt_epilogue(Epi e) {
  switch (e) {
    case Epi::bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epi::gelu: return CUBLASLT_EPILOGUE_GELU;
    case Epi::gelu_bias: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case Epi::gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX;
    case Epi::gelu_aux_bias: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case Epi::bgradb: return CUBLASLT_EPILOGUE_BGRADB;
    case Epi::dgelu: return CUBLASLT_EPILOGUE_DGELU;
    case Epi::dgelu_bgrad: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
    default: return CUBLASLT_EPILOGUE_DEFAULT;
  }
}

bool has_bias_pointer(Epi e) {
  return e == Epi::bias || e == Epi::gelu_bias || e == Epi::gelu_aux_bias || e == Epi::bgradb ||
         e == Epi::dgelu_bgrad;
}
bool has_aux(Epi e) {
  return e == Epi::gelu_aux || e == Epi::gelu_aux_bias || e == Epi::dgelu || e == Epi::dgelu_bgrad;
}

// The largest power of two (up to 256) dividing the address: what the heuristic may assume.
int alignment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && (a % uintptr_t(al)) != 0) al /= 2;
  return al;
}

// The alignment every non-null pointer of ps has (256 when all are null): the epilogue
// vectors' (bias, bias gradient) and aux matrix's.
int alignment(std::initializer_list<const void*> ps) {
  int al = 256;
  for (const void* p : ps)
    if (p) al = std::min(al, alignment(p));
  return al;
}

// One column-major problem D (m x n) = op(A) op(B) with an epilogue.
struct Problem {
  DType dtype;
  Epi epi;
  bool trans_a, trans_b;
  int64_t m, n, k;
  int64_t lda, ldb, ldd;
  int align_a, align_b, align_d, align_v;  // v: bias / aux vector or matrix
  bool accumulate = false;  // D = op(A) op(B) + C (beta 1, C laid out as D): a residual
  auto key() const {
    return std::make_tuple(int(dtype), int(epi), trans_a, trans_b, m, n, k, lda, ldb, ldd,
                           align_a, align_b, align_d, align_v, accumulate);
  }
};

// The descriptors are the plan's own: destroyed with it (also when make_plan throws half-way).
struct Plan {
  bool ok = false;  // false: no cuBLASLt algorithm; use the fallback
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  Plan(Plan&& o) noexcept { *this = std::move(o); }
  Plan& operator=(Plan&& o) noexcept {
    std::swap(ok, o.ok);
    std::swap(desc, o.desc);
    std::swap(a, o.a);
    std::swap(b, o.b);
    std::swap(d, o.d);
    std::swap(algo, o.algo);
    return *this;
  }
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

cudaDataType_t lt_type(DType dt) {
  switch (dt) {
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: return CUDA_R_32F;
  }
}

// Builds the plan, or returns one with ok = false when cuBLASLt cannot run the case.
Plan make_plan(const Problem& p) {
  Plan plan;
  if (!lt_dtype(p.dtype)) return plan;
  if (p.m > INT_MAX || p.n > INT_MAX || p.k > INT_MAX) return plan;
  // cuBLASLt wants the aux matrix's leading dimension a multiple of 8.
  if (has_aux(p.epi) && p.ldd % 8 != 0) return plan;
  // Bias, bias-gradient and aux pointers have no alignment preference: ask for 16 bytes.
  if (p.align_v < 16) return plan;
  const cudaDataType_t type = lt_type(p.dtype);
  const cublasComputeType_t compute =
      p.dtype == DType::f32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  FG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F));
  cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                                 sizeof(ta)));
  FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                                 sizeof(tb)));
  cublasLtEpilogue_t epi = lt_epilogue(p.epi);
  FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                 sizeof(epi)));
  if (has_bias_pointer(p.epi)) {
    int32_t bt = int32_t(type);
    FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
  }
  if (has_aux(p.epi)) {
    int64_t ld = p.ldd;
    FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof(ld)));
  }
  // Stored (pre-op) shapes, column-major.
  FG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, type, p.trans_a ? p.k : p.m,
                                             p.trans_a ? p.m : p.k, p.lda));
  FG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, type, p.trans_b ? p.n : p.k,
                                             p.trans_b ? p.k : p.n, p.ldb));
  FG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.d, type, p.m, p.n, p.ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  FG_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } pref_guard{pref};
  size_t ws = kLtWorkspace;
  FG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  uint32_t al[4] = {uint32_t(p.align_a), uint32_t(p.align_b), uint32_t(p.align_d),
                    uint32_t(p.align_d)};
  FG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof(uint32_t)));
  FG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof(uint32_t)));
  FG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof(uint32_t)));
  FG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3], sizeof(uint32_t)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), plan.desc, plan.a, plan.b,
                                                     plan.d, plan.d, pref, 1, &result, &found);
  // No algorithm for the case: the fallback. Any other failure is a bug here: say so.
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0))
    return plan;
  FG_CUBLAS_CHECK(st);
  if (result.state == CUBLAS_STATUS_SUCCESS) {
    plan.algo = result.algo;
    plan.ok = true;
  }
  return plan;
}

// Runs p through its cached plan; false when cuBLASLt has none for it (nothing launched).
// vec: the bias (or bias gradient) pointer; aux: the GELU input matrix; C: the matrix added
// (p.accumulate).
bool run_lt(const Problem& p, const void* A, const void* B, void* D, const void* vec, void* aux,
            void* workspace, const void* C = nullptr) {
  static std::mutex mu;
  static std::map<decltype(p.key()), Plan> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(p.key());
  if (it == plans.end()) {
    // A training run needs a few dozen plans; generation adds one per new row count. Past a
    // bound the cache starts over rather than grow without end.
    if (plans.size() >= kMaxPlans) plans.clear();
    it = plans.emplace(p.key(), make_plan(p)).first;
  }
  const Plan& plan = it->second;
  if (!plan.ok) return false;
  if (has_bias_pointer(p.epi))
    FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vec, sizeof(vec)));
  if (has_aux(p.epi))
    FG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
  const float alpha = 1.0f, beta = p.accumulate ? 1.0f : 0.0f;
  FG_CUBLAS_CHECK(cublasLtMatmul(lt_handle(), plan.desc, &alpha, A, plan.a, B, plan.b, &beta,
                                 p.accumulate ? C : D, plan.d, D, plan.d, &plan.algo, workspace,
                                 kLtWorkspace,
                                 cudaStreamPerThread));  // (0 would be the legacy stream to cuBLASLt)
  g_lt_launches.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// The fallback epilogue over y [M, N] holding the plain product.
template <typename T>
__global__ void bias_gelu_kernel(int64_t total, int64_t N, const T* bias, bool gelu, T* y,
                                 T* pre) {
  using A = typename acc_type<T>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    A v = A(y[i]);
    if (bias) v += A(bias[i % N]);
    if (gelu) {
      if (pre) pre[i] = T(v);
      v = unary_apply<UnaryOp::gelu, A>(v);
    }
    y[i] = T(v);
  }
}


}  // namespace

uint64_t linear_epilogue_launches() { return g_lt_launches.load(); }

// cuBLASLt's scratch where an epilogue may run; the reduction's where a fallback may sum.
size_t linear_workspace(DType dtype, int64_t, int64_t, int64_t K, bool epilogue, bool gelu) {
  return lt_dtype(dtype) && K > 0 && (epilogue || gelu) ? kLtWorkspace : 0;
}

size_t linear_weight_grad_workspace(DType dtype, int64_t M, int64_t N, int64_t, bool gb) {
  if (!gb) return 0;
  return std::max(lt_dtype(dtype) ? kLtWorkspace : 0,
                  reduce_workspace(ReduceOp::sum, dtype, 1, M, N));
}

size_t linear_input_grad_workspace(DType dtype, int64_t M, int64_t, int64_t K, bool pre,
                                   bool gb) {
  const size_t lt = pre && lt_dtype(dtype) && dgelu_epilogue() ? kLtWorkspace : 0;
  return std::max(lt, gb ? reduce_workspace(ReduceOp::sum, dtype, 1, M, K) : 0);
}

void linear(DType dtype, int64_t M, int64_t N, int64_t K, const void* x, const void* w,
            const void* bias, const void* residual, bool gelu, void* y, void* pre,
            void* workspace) {
  FG_CHECK(!(residual && gelu), "linear: a residual is added without GELU only");
  if (M == 0 || N == 0) return;
  // cuBLASLt only for an epilogue or a residual; plain products go to gemm().
  if (K > 0 && (bias || gelu || residual)) {
    Epi epi = gelu ? (pre ? (bias ? Epi::gelu_aux_bias : Epi::gelu_aux)
                          : (bias ? Epi::gelu_bias : Epi::gelu))
                   : (bias ? Epi::bias : Epi::none);
    Problem p{dtype, epi, true, false, N, M, K, K, K, N,
              alignment(w), alignment(x), alignment({y, residual}), alignment({bias, pre}),
              residual != nullptr};
    if (run_lt(p, w, x, y, bias, pre, workspace, residual)) return;
  }
  // Fallback: the residual copied into y, the product added to it, then bias and GELU in one
  // pass (two roundings where the epilogue has one).
  if (residual)
    FG_CUDA_CHECK(cudaMemcpyAsync(y, residual, size_t(M * N) * dtype_size(dtype),
                                  cudaMemcpyDeviceToDevice, cudaStreamPerThread));
  gemm(dtype, false, true, M, N, K, 1.0, x, K, 0, w, K, 0, residual ? 1.0 : 0.0, y, N, 0, 1);
  if (!bias && !gelu) return;
  FG_DISPATCH_FLOAT(dtype, "linear", [&] {
    bias_gelu_kernel<scalar_t><<<elementwise_grid(M * N), kElementwiseThreads>>>(
        M * N, N, static_cast<const scalar_t*>(bias), gelu, static_cast<scalar_t*>(y),
        static_cast<scalar_t*>(pre));
    FG_LAUNCH_CHECK();
  });
}

void linear_weight_grad(DType dtype, int64_t M, int64_t N, int64_t K, const void* gy,
                        const void* x, void* gw, void* gb, void* workspace) {
  if (N == 0) return;
  if (M > 0 && K > 0 && gb) {
    Problem p{dtype, Epi::bgradb, false, true, K, N, M, K, N, K,
              alignment(x), alignment(gy), alignment(gw), alignment(gb)};
    if (run_lt(p, x, gy, gw, gb, nullptr, workspace)) return;
  }
  gemm(dtype, true, false, N, K, M, 1.0, gy, N, 0, x, K, 0, 0.0, gw, K, 0, 1);
  if (gb) reduce(ReduceOp::sum, dtype, dtype, 1, M, N, gy, gb, workspace);
}

void linear_input_grad(DType dtype, int64_t M, int64_t N, int64_t K, const void* gy,
                       const void* w, const void* pre, void* gx, void* gb, void* workspace) {
  FG_CHECK(pre || !gb, "linear_input_grad: a bias gradient needs the GELU's input (pre)");
  if (M == 0 || K == 0) {
    if (gb && K > 0) FG_CUDA_CHECK(cudaMemsetAsync(gb, 0, size_t(K) * dtype_size(dtype), 0));
    return;
  }
  if (N > 0 && pre && dgelu_epilogue()) {
    // Column-major gx^T (K x M) = w (K x N stored, no transpose) * gy^T (N x M stored).
    Epi epi = gb ? Epi::dgelu_bgrad : Epi::dgelu;
    Problem p{dtype, epi, false, false, K, M, N, K, N, K,
              alignment(w), alignment(gy), alignment(gx), alignment({pre, gb})};
    if (run_lt(p, w, gy, gx, gb, const_cast<void*>(pre), workspace)) return;
  }
  gemm(dtype, false, false, M, K, N, 1.0, gy, N, 0, w, K, 0, 0.0, gx, K, 0, 1);
  if (!pre) return;
  // gx = gelu_backward(gx, pre) in place through the elementwise launcher, then the sums.
  StridedIndexer<3> idx;
  idx.ndim = 1;
  idx.sizes[0] = M * K;
  idx.strides[0][0] = idx.strides[1][0] = idx.strides[2][0] = 1;
  idx.contiguous = true;
  binary(BinaryOp::gelu_backward, dtype, M * K, idx, gx, pre, gx);
  if (gb) reduce(ReduceOp::sum, dtype, dtype, 1, M, K, gx, gb, workspace);
}

}  // namespace fg::cuda
