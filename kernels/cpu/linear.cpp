// CPU linear layer: y = x w^T + bias, optionally followed by GELU, its weight gradient, and its
// input gradient with the GELU before it folded in (the reference of kernels/cuda/linear.cu).
//
// Contract (kernels/kernels.h). The bias and the GELU are applied to the fp32 (f64) product
// before it is rounded, as the CUDA epilogue does: 16-bit operands are widened to float, the
// product runs in float through gemm, and each output is rounded once. pre, the GELU's input,
// is that sum rounded to the dtype.
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "kernels/common/convert.h"
#include "kernels/common/elementwise_math.h"
#include "kernels/kernels.h"

namespace fg::cpu {

namespace {

template <typename T>
using acc_t = typename acc_type<T>::type;

template <typename T>
std::vector<acc_t<T>> widen(const T* p, int64_t n) {
  std::vector<acc_t<T>> out(size_t(n > 0 ? n : 0));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = acc_t<T>(p[i]);
  return out;
}

// out[c] = the sum of column c of m [rows, cols] in the accumulation type A, each column summed
// over the rows in order (deterministic), rounded once.
template <typename A, typename S, typename T>
void column_sums(int64_t rows, int64_t cols, const S* m, T* out) {
  parallel_for(cols, rows, [&](int64_t c0, int64_t c1) {
    std::vector<A> acc(size_t(c1 - c0), A(0));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) acc[size_t(c - c0)] += A(m[r * cols + c]);
    for (int64_t c = c0; c < c1; ++c) out[c] = T(acc[size_t(c - c0)]);
  });
}

// Where a product in the accumulation type goes: `out` itself for f32 / f64, else `buf` (sized
// n) for 16-bit types, so that what follows (bias, GELU, its derivative) sees the unrounded sums.
template <typename T>
acc_t<T>* acc_output(T* out, int64_t n, std::vector<acc_t<T>>& buf) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    return out;
  } else {
    buf.resize(size_t(n));
    return buf.data();
  }
}

// c [M, N] (row stride N) = op(a) op(b) in the accumulation type: 16-bit operands are widened
// to float first, so the product is never rounded to 16 bits; f32 and f64 go straight to gemm.
// na, nb: the operands' element counts.
template <typename T>
void product_in_acc(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* a, int64_t lda,
                    int64_t na, const T* b, int64_t ldb, int64_t nb, acc_t<T>* c) {
  using A = acc_t<T>;
  const DType dt = std::is_same_v<A, double> ? DType::f64 : DType::f32;
  if constexpr (std::is_same_v<T, A>) {
    gemm(dt, ta, tb, M, N, K, 1.0, a, lda, 0, b, ldb, 0, 0.0, c, N, 0, 1);
  } else {
    std::vector<A> af = widen(a, na), bf = widen(b, nb);
    gemm(dt, ta, tb, M, N, K, 1.0, af.data(), lda, 0, bf.data(), ldb, 0, 0.0, c, N, 0, 1);
  }
}

template <typename T>
void linear_impl(int64_t M, int64_t N, int64_t K, const T* x, const T* w, const T* bias,
                 const T* residual, bool gelu, T* y, T* pre) {
  using A = acc_t<T>;
  constexpr bool kWide = !std::is_same_v<T, A>;
  std::vector<A> buf;
  A* prod = acc_output(y, M * N, buf);
  product_in_acc(false, true, M, N, K, x, K, M * K, w, K, N * K, prod);
  if (!bias && !residual && !gelu && !kWide) return;
  parallel_for(M, N * (gelu ? 8 : 1), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t c = 0; c < N; ++c) {
        A v = prod[r * N + c];
        if (residual) v += A(residual[r * N + c]);
        if (bias) v += A(bias[c]);
        if (gelu) {
          if (pre) pre[r * N + c] = T(v);
          v = unary_apply<UnaryOp::gelu, A>(v);
        }
        y[r * N + c] = T(v);
      }
    }
  });
}

template <typename T>
void weight_grad_impl(DType dtype, int64_t M, int64_t N, int64_t K, const T* gy, const T* x,
                      T* gw, T* gb) {
  using A = acc_t<T>;
  gemm(dtype, true, false, N, K, M, 1.0, gy, N, 0, x, K, 0, 0.0, gw, K, 0, 1);
  if (!gb) return;
  column_sums<A>(M, N, gy, gb);
}

template <typename T>
void input_grad_impl(int64_t M, int64_t N, int64_t K, const T* gy, const T* w, const T* pre,
                     T* gx, T* gb) {
  using A = acc_t<T>;
  constexpr bool kWide = !std::is_same_v<T, A>;
  // gy w in the accumulation type, then the GELU's derivative on the unrounded product.
  std::vector<A> buf;
  A* prod = acc_output(gx, M * K, buf);
  product_in_acc(false, false, M, K, N, gy, N, M * N, w, K, N * K, prod);
  if (pre)
    parallel_for(M, K * 8, [&](int64_t r0, int64_t r1) {
      for (int64_t i = r0 * K; i < r1 * K; ++i)
        prod[i] = binary_apply<BinaryOp::gelu_backward, A>(prod[i], A(pre[i]));
    });
  if constexpr (kWide)
    for (int64_t i = 0; i < M * K; ++i) gx[i] = T(prod[i]);
  if (gb) column_sums<A>(M, K, prod, gb);
}

}  // namespace

size_t linear_workspace(DType, int64_t, int64_t, int64_t, bool, bool) { return 0; }
size_t linear_weight_grad_workspace(DType, int64_t, int64_t, int64_t, bool) { return 0; }
size_t linear_input_grad_workspace(DType, int64_t, int64_t, int64_t, bool, bool) { return 0; }

void linear(DType dtype, int64_t M, int64_t N, int64_t K, const void* x, const void* w,
            const void* bias, const void* residual, bool gelu, void* y, void* pre, void*) {
  FG_CHECK(!(residual && gelu), "linear: a residual is added without GELU only");
  if (M == 0 || N == 0) return;
  FG_DISPATCH_FLOAT(dtype, "linear", [&] {
    linear_impl<scalar_t>(M, N, K, static_cast<const scalar_t*>(x),
                          static_cast<const scalar_t*>(w), static_cast<const scalar_t*>(bias),
                          static_cast<const scalar_t*>(residual), gelu,
                          static_cast<scalar_t*>(y), static_cast<scalar_t*>(pre));
  });
}

void linear_weight_grad(DType dtype, int64_t M, int64_t N, int64_t K, const void* gy,
                        const void* x, void* gw, void* gb, void*) {
  if (N == 0) return;
  FG_DISPATCH_FLOAT(dtype, "linear_weight_grad", [&] {
    weight_grad_impl<scalar_t>(dtype, M, N, K, static_cast<const scalar_t*>(gy),
                               static_cast<const scalar_t*>(x), static_cast<scalar_t*>(gw),
                               static_cast<scalar_t*>(gb));
  });
}

void linear_input_grad(DType dtype, int64_t M, int64_t N, int64_t K, const void* gy,
                       const void* w, const void* pre, void* gx, void* gb, void*) {
  FG_CHECK(pre || !gb, "linear_input_grad: a bias gradient needs the GELU's input (pre)");
  if (K == 0) return;
  FG_DISPATCH_FLOAT(dtype, "linear_input_grad", [&] {
    input_grad_impl<scalar_t>(M, N, K, static_cast<const scalar_t*>(gy),
                              static_cast<const scalar_t*>(w), static_cast<const scalar_t*>(pre),
                              static_cast<scalar_t*>(gx), static_cast<scalar_t*>(gb));
  });
}

}  // namespace fg::cpu
