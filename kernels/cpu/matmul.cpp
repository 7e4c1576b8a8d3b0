// CPU batched GEMM (the reference matrix product of flashgrad).
//
// Contract (kernels/kernels.h): row-major C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b].
// f32 and f64 go to cblas (OpenBLAS) when the build found it (FLASHGRAD_HAVE_CBLAS); the other
// cases (bf16, f16, or no BLAS) use the blocked loops below, which accumulate in float (double
// for f64). beta == 0 never reads C, so C may hold garbage (or NaN poison) on entry.
//
// Determinism: every element of C is computed by one thread, summing over k in increasing
// order, so results do not depend on the thread count or on scheduling.
#include <algorithm>
#include <climits>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "kernels/kernels.h"
#include "core/error.h"

#ifdef FLASHGRAD_HAVE_CBLAS
#include <cblas.h>
// OpenBLAS's own thread count (absent from other BLAS libraries: a weak reference).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
#endif

namespace fg::cpu {

namespace {


template <typename T>
using acc_t = typename acc_type<T>::type;

// Element (r, c) of op(X) where X is stored row-major with row stride ld.
template <typename T>
inline acc_t<T> load_op(const T* X, bool trans, int64_t ld, int64_t r, int64_t c) {
  return acc_t<T>(trans ? X[c * ld + r] : X[r * ld + c]);
}

// The blocked loops below vectorise: about four multiply-adds cost one "operation" of
// parallel_for's work estimate.
constexpr int64_t kMacsPerOp = 4;
constexpr int64_t kRowBlock = 4;    // rows of C computed together (reuse each loaded B row)
constexpr int64_t kColBlock = 256;  // columns of C kept in the accumulators at once

// One batch: packs op(B) as a dense K x N panel in the accumulation type (converting 16-bit
// values once and turning a transposed B into unit-stride rows), then computes rows
// [m_begin, m_end) of C, kRowBlock rows at a time: acc[r][j] += a[r][k] * Bp[k][j] keeps the
// innermost loop unit-stride over j, which the compiler vectorises.
template <typename T>
struct LoopGemm {
  using A_t = acc_t<T>;
  bool ta, tb;
  int64_t M, N, K;
  A_t alpha, beta;
  const T* A;
  int64_t lda, stride_a;
  const T* B;
  int64_t ldb, stride_b;
  T* C;
  int64_t ldc, stride_c;

  void pack_b(int64_t b, std::vector<A_t>& Bp) const {
    Bp.resize(size_t(K * N));
    const T* Bb = B + b * stride_b;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) Bp[size_t(k * N + n)] = load_op(Bb, tb, ldb, k, n);
  }

  void rows(int64_t b, int64_t m_begin, int64_t m_end, const std::vector<A_t>& Bp) const {
    const T* Ab = A + b * stride_a;
    T* Cb = C + b * stride_c;
    std::vector<A_t> Ap(size_t(kRowBlock * K));
    A_t acc[kRowBlock][kColBlock];
    for (int64_t m0 = m_begin; m0 < m_end; m0 += kRowBlock) {
      int64_t mr = std::min(kRowBlock, m_end - m0);
      for (int64_t r = 0; r < mr; ++r)
        for (int64_t k = 0; k < K; ++k) Ap[size_t(r * K + k)] = load_op(Ab, ta, lda, m0 + r, k);
      for (int64_t n0 = 0; n0 < N; n0 += kColBlock) {
        int64_t nb = std::min(kColBlock, N - n0);
        for (int64_t r = 0; r < mr; ++r)
          for (int64_t j = 0; j < nb; ++j) acc[r][j] = A_t(0);
        for (int64_t k = 0; k < K; ++k) {
          const A_t* bk = Bp.data() + k * N + n0;
          for (int64_t r = 0; r < mr; ++r) {
            A_t a = Ap[size_t(r * K + k)];
            A_t* accr = acc[r];
            for (int64_t j = 0; j < nb; ++j) accr[j] += a * bk[j];
          }
        }
        for (int64_t r = 0; r < mr; ++r) {
          T* c = Cb + (m0 + r) * ldc + n0;
          for (int64_t j = 0; j < nb; ++j) {
            A_t v = alpha * acc[r][j];
            if (beta != A_t(0)) v += beta * A_t(c[j]);
            c[j] = T(v);
          }
        }
      }
    }
  }

  void run(int64_t batch) const {
    int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
    if (batch >= hw && K * N <= (int64_t(1) << 20)) {
      // Many small products (e.g. per-head attention scores): one thread per batch range,
      // each with its own packed panel.
      parallel_for(batch, (M * N * K + K * N) / kMacsPerOp, [&](int64_t b0, int64_t b1) {
        std::vector<A_t> Bp;
        for (int64_t b = b0; b < b1; ++b) {
          pack_b(b, Bp);
          rows(b, 0, M, Bp);
        }
      });
      return;
    }
    std::vector<A_t> Bp;
    for (int64_t b = 0; b < batch; ++b) {
      pack_b(b, Bp);
      parallel_for(M, N * K / kMacsPerOp, [&](int64_t m0, int64_t m1) { rows(b, m0, m1, Bp); });
    }
  }
};

// C = beta * C (or 0 when beta == 0): what a product with K == 0 leaves.
template <typename T>
void scale_c(int64_t M, int64_t N, double beta, T* C, int64_t ldc, int64_t stride_c,
             int64_t batch) {
  using A_t = acc_t<T>;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        T& c = C[b * stride_c + m * ldc + n];
        c = beta == 0 ? T(A_t(0)) : T(A_t(beta) * A_t(c));
      }
}

#ifdef FLASHGRAD_HAVE_CBLAS
// cblas wants ld >= the stored row length. When an operand has a single stored row its ld is
// never used to address anything, so it may be raised; otherwise a smaller ld (overlapping
// rows) is left to the loops, which accept it.
bool blas_ld(int64_t& ld, int64_t stored_rows, int64_t stored_cols) {
  int64_t need = std::max<int64_t>(1, stored_cols);
  if (ld >= need) return ld <= INT_MAX;
  if (stored_rows <= 1) {
    ld = need;
    return ld <= INT_MAX;
  }
  return false;
}

template <typename T>
bool try_blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const T* A,
              int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b,
              double beta, T* C, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX) return false;
  if (!blas_ld(lda, ta ? K : M, ta ? M : K)) return false;
  if (!blas_ld(ldb, tb ? N : K, tb ? K : N)) return false;
  if (!blas_ld(ldc, M, N)) return false;
  auto TA = ta ? CblasTrans : CblasNoTrans;
  auto TB = tb ? CblasTrans : CblasNoTrans;
  // The BLAS runs single-threaded and flashgrad's pool splits the product: OpenBLAS's own
  // threads spin (sched_yield) between calls, and on a small machine they take the cores the
  // rest of a training step needs (measured: a third of a CPU step went to that spinning).
  static const bool single = [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    return true;
  }();
  (void)single;
  // Rows [m0, m1) of product b: op(A)'s rows are A's rows, or its columns when transposed.
  auto product = [&](int64_t b, int64_t m0, int64_t m1) {
    const T* a = A + b * stride_a + (ta ? m0 : m0 * lda);
    T* c = C + b * stride_c + m0 * ldc;
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(CblasRowMajor, TA, TB, int(m1 - m0), int(N), int(K), float(alpha), a, int(lda),
                  B + b * stride_b, int(ldb), float(beta), c, int(ldc));
    } else {
      cblas_dgemm(CblasRowMajor, TA, TB, int(m1 - m0), int(N), int(K), alpha, a, int(lda),
                  B + b * stride_b, int(ldb), beta, c, int(ldc));
    }
  };
  if (batch >= cpu_thread_count()) {  // whole products per thread
    parallel_for(batch, M * N * K, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) product(b, 0, M);
    });
  } else {  // every product split by rows
    parallel_for(M, batch * N * K, [&](int64_t m0, int64_t m1) {
      for (int64_t b = 0; b < batch; ++b) product(b, m0, m1);
    });
  }
  return true;
}
#endif

}  // namespace

void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
          double alpha, const void* A, int64_t lda, int64_t stride_a, const void* B,
          int64_t ldb, int64_t stride_b, double beta, void* C, int64_t ldc, int64_t stride_c,
          int64_t batch) {
  FG_CHECK(M >= 0 && N >= 0 && K >= 0 && batch >= 0, "gemm: negative size (M=", M, ", N=", N,
           ", K=", K, ", batch=", batch, ")");
  if (M == 0 || N == 0 || batch == 0) return;
  FG_DISPATCH_FLOAT(dtype, "gemm", [&] {
    using T = scalar_t;
    T* c = static_cast<T*>(C);
    if (K == 0) {
      scale_c<T>(M, N, beta, c, ldc, stride_c, batch);
      return;
    }
    const T* a = static_cast<const T*>(A);
    const T* b = static_cast<const T*>(B);
#ifdef FLASHGRAD_HAVE_CBLAS
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      if (try_blas<T>(trans_a, trans_b, M, N, K, alpha, a, lda, stride_a, b, ldb, stride_b, beta,
                      c, ldc, stride_c, batch))
        return;
    }
#endif
    using A_t = acc_t<T>;
    LoopGemm<T> g{trans_a, trans_b, M,     N,       K,   A_t(alpha), A_t(beta), a,
                  lda,     stride_a, b,    ldb,     stride_b, c,     ldc,       stride_c};
    g.run(batch);
  });
}

}  // namespace fg::cpu
