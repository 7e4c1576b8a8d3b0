// Every kernel entry point of flashgrad, on raw pointers, for both devices.
//
// Scratch memory reaches a kernel from its caller: a kernel that needs some has a
// `<name>_workspace(...)` function giving the bytes, and takes a `workspace` pointer (device
// memory for CUDA; contents on entry do not matter). The CPU twins need none and return 0.
//
// Each function is declared twice with the same signature: in fg::cpu (kernels/cpu/*.cpp,
// the reference) and in fg::cuda (kernels/cuda/*.cu, launched on the calling thread's default stream). The
// raw ops of tensor/ops.h pick one by the tensor's device. Nothing here knows about Tensor:
// pointers, element counts, strides and a DType. Attention has its own folder and header
// (kernels/attention/attention.h).
//
// Conventions: 16-bit types compute in float; f64 computes in double; `n` is an element
// count; "rows x cols" operands are contiguous row-major unless strides are given.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/common/strided.h"
#include "core/dispatch.h"

namespace fg {

enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, rsqrt, tanh, relu, gelu, abs, sigmoid, sin, cos, square, reciprocal, sign
};
enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  eq, ne, lt, le, gt, ge,  // comparisons produce 1 or 0 in the operands' dtype
  gelu_backward,           // (grad, x) -> grad * gelu'(x)
  relu_backward,           // (grad, x) -> x > 0 ? grad : 0
  tanh_backward,           // (grad, y = tanh(x)) -> grad * (1 - y^2)
  sigmoid_backward         // (grad, y = sigmoid(x)) -> grad * y * (1 - y)
};
enum class ReduceOp : uint8_t { sum, max, min };

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);

// The GELU of flashgrad is the tanh approximation used by GPT-2:
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))

// The result dtypes reduce() supports: the input's, or f32 for a sum of 16-bit values.
inline void check_reduce_out_dtype(ReduceOp op, DType dtype, DType out_dtype) {
  const bool widen = op == ReduceOp::sum && (dtype == DType::bf16 || dtype == DType::f16) &&
                     out_dtype == DType::f32;
  FG_CHECK(out_dtype == dtype || widen, "reduce: a ", dtype_name(dtype),
           " reduction cannot produce ", dtype_name(out_dtype),
           " (only its own dtype, or f32 for a sum of bf16/f16)");
}

#define FG_DECLARE_KERNELS                                                                     \
  /* out[i] = src[i] converted from src_dtype to dst_dtype; idx: [0] dst, [1] src */           \
  void copy(DType dst_dtype, DType src_dtype, int64_t n, const StridedIndexer<2>& idx,         \
            const void* src, void* dst);                                                        \
  void fill(DType dtype, int64_t n, const StridedIndexer<1>& idx, void* out, double value);    \
  /* idx: [0] out, [1] in */                                                                    \
  void unary(UnaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx, const void* in,  \
             void* out);                                                                        \
  /* idx: [0] out, [1] a, [2] b */                                                              \
  void binary(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<3>& idx, const void* a, \
              const void* b, void* out);                                                        \
  /* out = op(a, s), or op(s, a) when scalar_first; idx: [0] out, [1] a */                     \
  void binary_scalar(BinaryOp op, DType dtype, int64_t n, const StridedIndexer<2>& idx,        \
                     const void* a, double s, bool scalar_first, void* out);                    \
  /* out = cond != 0 ? a : b; idx: [0] out, [1] cond, [2] a, [3] b */                           \
  void where(DType dtype, DType cond_dtype, int64_t n, const StridedIndexer<4>& idx,           \
             const void* cond, const void* a, const void* b, void* out);                        \
  /* in is contiguous [outer, len, inner]; out is contiguous [outer, inner] of out_dtype: the  \
     input's dtype, or f32 for a sum of bf16/f16 (the float accumulator, not rounded to 16      \
     bits). workspace: reduce_workspace() bytes (CUDA: the partial results of a split len) */   \
  size_t reduce_workspace(ReduceOp op, DType dtype, int64_t outer, int64_t len, int64_t inner); \
  void reduce(ReduceOp op, DType dtype, DType out_dtype, int64_t outer, int64_t len,            \
              int64_t inner, const void* in, void* out, void* workspace);                       \
  /* out (int64) is contiguous [outer, inner]: index of the first maximum along len */          \
  void argmax(DType dtype, int64_t outer, int64_t len, int64_t inner, const void* in,          \
              int64_t* out);                                                                    \
  /* Row-major batched GEMM: C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], op = transpose   \
     when trans_*; A is M x K after op, B is K x N after op, C is M x N; ld* are row strides;  \
     batch strides in elements. bf16/f16 accumulate in fp32. */                                 \
  void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,          \
            double alpha, const void* A, int64_t lda, int64_t stride_a, const void* B,         \
            int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc, int64_t stride_c, \
            int64_t batch);                                                                     \
  /* A linear layer on contiguous row-major operands: y [M, N] = x [M, K] w^T + bias, w being  \
     [N, K] and bias [N] (or null), then GELU when gelu; pre [M, N] (may be null; with gelu)   \
     receives the GELU's input. residual [M, N] (may be null; not with gelu) is added too: a   \
     residual connection. Bias, residual and GELU act on the fp32 product before its one      \
     rounding (CUDA's fallback path rounds more often). workspace: linear_workspace() bytes    \
     for the same arguments, `epilogue` meaning a bias or a residual (cuBLASLt's scratch). */  \
  size_t linear_workspace(DType dtype, int64_t M, int64_t N, int64_t K, bool epilogue,          \
                          bool gelu);                                                           \
  void linear(DType dtype, int64_t M, int64_t N, int64_t K, const void* x, const void* w,      \
              const void* bias, const void* residual, bool gelu, void* y, void* pre,           \
              void* workspace);                                                                 \
  /* Its weight gradient: gw [N, K] = gy^T x for gy [M, N], x [M, K]; gb [N] (may be null) is  \
     the column sums of gy. Both overwritten. workspace: linear_weight_grad_workspace(). */    \
  size_t linear_weight_grad_workspace(DType dtype, int64_t M, int64_t N, int64_t K, bool gb);   \
  void linear_weight_grad(DType dtype, int64_t M, int64_t N, int64_t K, const void* gy,         \
                          const void* x, void* gw, void* gb, void* workspace);                  \
  /* Its input gradient: gx [M, K] = gy [M, N] w [N, K]. With pre [M, K] (not null), the GELU   \
     that made the layer's input is folded in: gx = (gy w) gelu'(pre), and gb [K] (may be      \
     null; only with pre) gets gx's column sums, the bias gradient of the layer before: of the \
     fp32 values (CPU, cuBLASLt epilogue) or of gx as rounded (CUDA default), within rounding. \
     workspace: linear_input_grad_workspace(). */                                             \
  size_t linear_input_grad_workspace(DType dtype, int64_t M, int64_t N, int64_t K, bool pre,    \
                                     bool gb);                                                  \
  void linear_input_grad(DType dtype, int64_t M, int64_t N, int64_t K, const void* gy,          \
                         const void* w, const void* pre, void* gx, void* gb, void* workspace);  \
  /* Softmax (or log-softmax) over the last dim of contiguous [rows, cols] */                   \
  void softmax(DType dtype, int64_t rows, int64_t cols, const void* in, void* out, bool log);   \
  /* gx from y = softmax(x) (or log-softmax) and gy */                                          \
  void softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y, const void* gy, \
                        void* gx, bool log);                                                    \
  /* Per-row loss of logits [rows, cols] against integer targets (i32 or i64); rows whose     \
     target equals ignore_index get loss 0. losses is fp32 [rows]. Out-of-range targets are   \
     reported through *bad_target (set to the first offending row + 1; host pointer on CPU,  \
     device pointer on CUDA). */                                                                \
  void cross_entropy(DType dtype, DType target_dtype, int64_t rows, int64_t cols,               \
                     const void* logits, const void* targets, int64_t ignore_index,             \
                     float* losses, int64_t* bad_target);                                       \
  /* glogits = (softmax(logits) - onehot(target)) * grad_scale[0] for rows not ignored;       \
     grad_scale is an fp32 device/host scalar (the loss gradient already divided by count) */ \
  void cross_entropy_backward(DType dtype, DType target_dtype, int64_t rows, int64_t cols,      \
                              const void* logits, const void* targets, int64_t ignore_index,    \
                              const float* grad_scale, void* glogits);                          \
  /* LayerNorm over the last dim: y = (x - mean) * rstd * w + b; mean, rstd fp32 [rows];      \
     w, b may be null (no affine) */                                                            \
  void layer_norm(DType dtype, int64_t rows, int64_t cols, const void* x, const void* w,        \
                  const void* b, double eps, void* y, float* mean, float* rstd);                \
  /* gw, gb (same dtype as w) are overwritten, not accumulated; may be null. workspace holds   \
     layer_norm_backward_workspace() bytes (CUDA: partial sums of gw, gb; CPU: unused). */     \
  size_t layer_norm_backward_workspace(DType dtype, int64_t rows, int64_t cols);                \
  void layer_norm_backward(DType dtype, int64_t rows, int64_t cols, const void* gy,             \
                           const void* x, const void* w, const float* mean, const float* rstd,  \
                           void* gx, void* gw, void* gb, void* workspace);                      \
  /* out[r, :] = weight[idx[r], :]; weight [vocab, dim]; idx i32 or i64 [rows].              \
     Out-of-range indices are reported through *bad_index as in cross_entropy. */              \
  void embedding(DType dtype, DType idx_dtype, int64_t rows, int64_t dim, int64_t vocab,        \
                 const void* weight, const void* idx, void* out, int64_t* bad_index);           \
  /* cache[b, pos[b] + t, :] = src[b, t, :] for b < batch, t < T: rows of row_elems elements, \
     for the keys (src_k -> cache_k) and the values (src_v -> cache_v) in one launch. Caches   \
     [batch, capacity, row_elems] contiguous; src row (b, t) starts at element                 \
     b * src_batch + t * src_row of either source, its elements contiguous; pos i32 [batch].  \
     An entry with pos[b] < 0 or pos[b] + T > capacity is not written and reported (position \
     b) through *bad_index as in cross_entropy. The positions are read where it runs. */       \
  void kv_cache_write(DType dtype, int64_t batch, int64_t T, int64_t row_elems,                 \
                      int64_t capacity, const void* src_k, const void* src_v,                   \
                      int64_t src_batch, int64_t src_row, const int32_t* pos, void* cache_k,    \
                      void* cache_v, int64_t* bad_index);                                       \
  /* gweight[idx[r], :] += gout[r, :]; gweight must be zeroed first (CUDA: atomics, through   \
     an fp32 accumulator of embedding_backward_workspace() bytes for 16-bit types) */          \
  size_t embedding_backward_workspace(DType dtype, int64_t vocab, int64_t dim);                 \
  void embedding_backward(DType dtype, DType idx_dtype, int64_t rows, int64_t dim,              \
                          int64_t vocab, const void* gout, const void* idx, void* gweight,      \
                          void* workspace);                                                     \
  /* y[i] = keep(i) ? x[i] * dropout_keep_scale(p) : 0, keep from fg::dropout_keep              \
     (philox.h: 16 random bits per element), plus residual[i] when residual is not              \
     null (one rounding); x, residual, y contiguous */                                          \
  void dropout(DType dtype, int64_t n, const void* x, const void* residual, void* y, double p,  \
               uint64_t seed, uint64_t offset);                                                 \
  /* Along the middle dim of contiguous in [outer, len_in, inner] and index [outer, len_idx,  \
     inner] (i32/i64): out[o, j, i] = in[o, index[o, j, i], i]. Bad indices via *bad_index.  */ \
  void gather(DType dtype, DType idx_dtype, int64_t outer, int64_t len_in, int64_t len_idx,     \
              int64_t inner, const void* in, const void* index, void* out, int64_t* bad_index); \
  /* The adjoint of gather: gin[o, index[o, j, i], i] += gout[o, j, i]; gin zeroed first.      \
     workspace: scatter_add_workspace() bytes (CUDA 16-bit: the fp32 accumulator) */           \
  size_t scatter_add_workspace(DType dtype, int64_t n_in);                                      \
  void scatter_add(DType dtype, DType idx_dtype, int64_t outer, int64_t len_in,                 \
                   int64_t len_idx, int64_t inner, const void* gout, const void* index,         \
                   void* gin, void* workspace);                                                 \
  /* Random fills with fg::philox_uniform (philox.h): element i from (seed, offset, i). */    \
  void rand_uniform(DType dtype, int64_t n, uint64_t seed, uint64_t offset, double low,         \
                    double high, void* out);                                                    \
  /* Box-Muller on pairs of uniforms: element i uses draws 2i and 2i + 1. */                   \
  void rand_normal(DType dtype, int64_t n, uint64_t seed, uint64_t offset, double mean,         \
                   double std, void* out);                                                      \
  void rand_int(DType dtype, int64_t n, uint64_t seed, uint64_t offset, int64_t low,            \
                int64_t high, void* out);

namespace cpu {
FG_DECLARE_KERNELS
}
namespace cuda {
FG_DECLARE_KERNELS
// For tests: how many products have run through cuBLASLt epilogues in this process.
uint64_t linear_epilogue_launches();
// FLASHGRAD_ALLOW_TF32=1 (read once; kernels/cuda/matmul.cu): f32 matrix products may use TF32
// tensor cores (about 1e-3 relative error), and the f32 attention forward the 3xTF32 kernel
// (near fp32 accuracy, faster than the SIMT one). Off by default, as in PyTorch.
bool allow_tf32();
}

}  // namespace fg
