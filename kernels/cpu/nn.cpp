// CPU kernels of the neural-network ops: softmax and log-softmax, cross-entropy, LayerNorm,
// embedding, dropout, gather / scatter-add. They are the reference the CUDA kernels
// (kernels/cuda/nn_rows.cu, nn_index.cu) are tested against, so they are written for clarity
// first.
//
// 16-bit types compute in float, f64 in double. Row loops may run on several threads; every
// output element is produced by one thread in a fixed order, so results are deterministic.
// Out-of-range targets / indices are reported by setting *bad = (first bad position) + 1;
// the caller zeroes *bad before the call and turns a nonzero value into an fg::Error.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "core/philox.h"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg::cpu {

namespace {

template <typename T>
using acc_t = typename acc_type<T>::type;



// Runs fn(r, report) over rows [0, n), in parallel; report(pos) marks position pos as bad.
// Afterwards *bad holds the smallest reported position + 1 (unchanged when none).
template <typename F>
void rows_with_bad(int64_t n, int64_t cost, int64_t* bad, F&& fn) {
  // One bad-position slot per chunk; chunks cover [0, n) in order, so the first chunk that
  // saw a bad position holds the smallest one.
  int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(hw, n));
  int64_t chunk = (n + chunks - 1) / chunks;
  std::vector<int64_t> first_bad(size_t(chunks), 0);
  parallel_for(chunks, chunk * std::max<int64_t>(cost, 1), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t& fb = first_bad[size_t(c)];
      auto report = [&fb](int64_t pos) {
        if (fb == 0 || pos + 1 < fb) fb = pos + 1;
      };
      int64_t end = std::min(n, (c + 1) * chunk);
      for (int64_t r = c * chunk; r < end; ++r) fn(r, report);
    }
  });
  for (int64_t fb : first_bad)
    if (fb != 0) {
      if (bad && (*bad == 0 || fb < *bad)) *bad = fb;
      break;
    }
}

using std::exp;
using std::log;
using std::sqrt;

template <typename T>
void softmax_impl(int64_t rows, int64_t cols, const T* in, T* out, bool log_out) {
  using A = acc_t<T>;
  parallel_for(rows, cols * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = in + r * cols;
      T* y = out + r * cols;
      A m = -std::numeric_limits<A>::infinity();
      for (int64_t c = 0; c < cols; ++c) m = std::max(m, A(x[c]));
      // A row of all -inf (every key masked) gives softmax 0 and log-softmax -inf instead of
      // NaN: shift by 0 so that exp(-inf) = 0 and the sum is 0.
      if (m == -std::numeric_limits<A>::infinity()) m = A(0);
      A s = 0;
      for (int64_t c = 0; c < cols; ++c) s += exp(A(x[c]) - m);
      if (log_out) {
        A ls = s > A(0) ? A(log(s)) : A(0);
        for (int64_t c = 0; c < cols; ++c) y[c] = T(A(x[c]) - m - ls);
      } else {
        A inv = s > A(0) ? A(1) / s : A(0);
        for (int64_t c = 0; c < cols; ++c) y[c] = T(exp(A(x[c]) - m) * inv);
      }
    }
  });
}

template <typename T>
void softmax_backward_impl(int64_t rows, int64_t cols, const T* yp, const T* gyp, T* gxp,
                           bool log_out) {
  using A = acc_t<T>;
  parallel_for(rows, cols * 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* y = yp + r * cols;
      const T* gy = gyp + r * cols;
      T* gx = gxp + r * cols;
      if (log_out) {
        // y = log softmax(x): gx = gy - softmax(x) * sum(gy)
        A s = 0;
        for (int64_t c = 0; c < cols; ++c) s += A(gy[c]);
        for (int64_t c = 0; c < cols; ++c) gx[c] = T(A(gy[c]) - exp(A(y[c])) * s);
      } else {
        // y = softmax(x): gx = y * (gy - sum(gy * y))
        A dot = 0;
        for (int64_t c = 0; c < cols; ++c) dot += A(gy[c]) * A(y[c]);
        for (int64_t c = 0; c < cols; ++c) gx[c] = T(A(y[c]) * (A(gy[c]) - dot));
      }
    }
  });
}

// log(sum(exp(x))) of one row, in the accumulation type.
template <typename T, typename A = acc_t<T>>
A row_logsumexp(const T* x, int64_t cols, A& max_out) {
  A m = -std::numeric_limits<A>::infinity();
  for (int64_t c = 0; c < cols; ++c) m = std::max(m, A(x[c]));
  A s = 0;
  for (int64_t c = 0; c < cols; ++c) s += exp(A(x[c]) - m);
  max_out = m;
  return m + A(log(s));
}

}  // namespace

void softmax(DType dtype, int64_t rows, int64_t cols, const void* in, void* out, bool log) {
  FG_DISPATCH_FLOAT(dtype, "softmax", [&] {
    softmax_impl<scalar_t>(rows, cols, static_cast<const scalar_t*>(in),
                           static_cast<scalar_t*>(out), log);
  });
}

void softmax_backward(DType dtype, int64_t rows, int64_t cols, const void* y, const void* gy,
                      void* gx, bool log) {
  FG_DISPATCH_FLOAT(dtype, "softmax_backward", [&] {
    softmax_backward_impl<scalar_t>(rows, cols, static_cast<const scalar_t*>(y),
                                    static_cast<const scalar_t*>(gy), static_cast<scalar_t*>(gx),
                                    log);
  });
}

void cross_entropy(DType dtype, DType target_dtype, int64_t rows, int64_t cols,
                   const void* logits, const void* targets, int64_t ignore_index, float* losses,
                   int64_t* bad_target) {
  FG_DISPATCH_FLOAT(dtype, "cross_entropy", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* x = static_cast<const T*>(logits);
    FG_DISPATCH_INDEX(target_dtype, "cross_entropy", [&] {
      const index_t* tg = static_cast<const index_t*>(targets);
      rows_with_bad(rows, cols * 2, bad_target, [&](int64_t r, auto&& report) {
        int64_t t = int64_t(tg[r]);
        if (t == ignore_index) {
          losses[r] = 0.f;
          return;
        }
        if (t < 0 || t >= cols) {
          report(r);
          losses[r] = 0.f;
          return;
        }
        const T* row = x + r * cols;
        A m;
        A lse = row_logsumexp(row, cols, m);
        losses[r] = float(lse - A(row[t]));
      });
    });
  });
}

void cross_entropy_backward(DType dtype, DType target_dtype, int64_t rows, int64_t cols,
                            const void* logits, const void* targets, int64_t ignore_index,
                            const float* grad_scale, void* glogits) {
  FG_DISPATCH_FLOAT(dtype, "cross_entropy_backward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* x = static_cast<const T*>(logits);
    T* gx = static_cast<T*>(glogits);
    A scale = A(grad_scale[0]);
    FG_DISPATCH_INDEX(target_dtype, "cross_entropy_backward", [&] {
      const index_t* tg = static_cast<const index_t*>(targets);
      parallel_for(rows, cols * 3, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          int64_t t = int64_t(tg[r]);
          T* g = gx + r * cols;
          // Ignored rows (and out-of-range ones, which the forward already rejected) get 0.
          if (t == ignore_index || t < 0 || t >= cols) {
            for (int64_t c = 0; c < cols; ++c) g[c] = T(A(0));
            continue;
          }
          const T* row = x + r * cols;
          A m;
          A lse = row_logsumexp(row, cols, m);
          for (int64_t c = 0; c < cols; ++c) {
            A p = exp(A(row[c]) - lse);
            g[c] = T((p - (c == t ? A(1) : A(0))) * scale);
          }
        }
      });
    });
  });
}

namespace {

// Mean and 1/std of one row in the accumulation type (two passes: exact for f64).
template <typename T, typename A = acc_t<T>>
void row_stats(const T* x, int64_t cols, double eps, A& mean, A& rstd) {
  A s = 0;
  for (int64_t c = 0; c < cols; ++c) s += A(x[c]);
  mean = s / A(cols);
  A v = 0;
  for (int64_t c = 0; c < cols; ++c) {
    A d = A(x[c]) - mean;
    v += d * d;
  }
  rstd = A(1) / A(sqrt(v / A(cols) + A(eps)));
}

}  // namespace

void layer_norm(DType dtype, int64_t rows, int64_t cols, const void* x, const void* w,
                const void* b, double eps, void* y, float* mean, float* rstd) {
  FG_DISPATCH_FLOAT(dtype, "layer_norm", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* bp = static_cast<const T*>(b);
    T* yp = static_cast<T*>(y);
    parallel_for(rows, cols * 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * cols;
        T* yr = yp + r * cols;
        A mu, rs;
        row_stats(xr, cols, eps, mu, rs);
        for (int64_t c = 0; c < cols; ++c) {
          A v = (A(xr[c]) - mu) * rs;
          if (wp) v *= A(wp[c]);
          if (bp) v += A(bp[c]);
          yr[c] = T(v);
        }
        mean[r] = float(mu);
        rstd[r] = float(rs);
      }
    });
  });
}

size_t layer_norm_backward_workspace(DType, int64_t, int64_t) { return 0; }

void layer_norm_backward(DType dtype, int64_t rows, int64_t cols, const void* gy, const void* x,
                         const void* w, const float* mean, const float* rstd, void* gx, void* gw,
                         void* gb, void*) {
  FG_DISPATCH_FLOAT(dtype, "layer_norm_backward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* gyp = static_cast<const T*>(gy);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    T* gxp = static_cast<T*>(gx);
    // The statistics are the fp32 ones saved by the forward, for every dtype (the kernel
    // gets no eps, so f64 cannot recompute them exactly): f64 gradients are therefore exact
    // to about 1e-7 relative, far inside gradcheck's tolerance, and CPU and CUDA agree.
    auto stats = [&](int64_t r, A& mu, A& rs) {
      mu = A(mean[r]);
      rs = A(rstd[r]);
    };
    parallel_for(rows, cols * 6, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + r * cols;
        const T* gr = gyp + r * cols;
        T* gxr = gxp + r * cols;
        A mu, rs;
        stats(r, mu, rs);
        A s1 = 0, s2 = 0;
        for (int64_t c = 0; c < cols; ++c) {
          A dxh = A(gr[c]) * (wp ? A(wp[c]) : A(1));
          A xh = (A(xr[c]) - mu) * rs;
          s1 += dxh;
          s2 += dxh * xh;
        }
        s1 /= A(cols);
        s2 /= A(cols);
        for (int64_t c = 0; c < cols; ++c) {
          A dxh = A(gr[c]) * (wp ? A(wp[c]) : A(1));
          A xh = (A(xr[c]) - mu) * rs;
          gxr[c] = T(rs * (dxh - s1 - xh * s2));
        }
      }
    });
    if (!gw && !gb) return;
    // Column sums over rows: threads over column ranges; each walks the rows in order (so
    // the sums are deterministic) reading its columns of a row contiguously.
    T* gwp = static_cast<T*>(gw);
    T* gbp = static_cast<T*>(gb);
    parallel_for(cols, rows * 2, [&](int64_t c0, int64_t c1) {
      std::vector<A> sw(static_cast<size_t>(c1 - c0), A(0)), sb(static_cast<size_t>(c1 - c0), A(0));
      for (int64_t r = 0; r < rows; ++r) {
        A mu, rs;
        stats(r, mu, rs);
        const T* gr = gyp + r * cols;
        const T* xr = xp + r * cols;
        for (int64_t c = c0; c < c1; ++c) {
          A g = A(gr[c]);
          sw[size_t(c - c0)] += g * (A(xr[c]) - mu) * rs;
          sb[size_t(c - c0)] += g;
        }
      }
      for (int64_t c = c0; c < c1; ++c) {
        if (gwp) gwp[c] = T(sw[size_t(c - c0)]);
        if (gbp) gbp[c] = T(sb[size_t(c - c0)]);
      }
    });
  });
}

void embedding(DType dtype, DType idx_dtype, int64_t rows, int64_t dim, int64_t vocab,
               const void* weight, const void* idx, void* out, int64_t* bad_index) {
  FG_DISPATCH_FLOAT(dtype, "embedding", [&] {
    using T = scalar_t;
    const T* wp = static_cast<const T*>(weight);
    T* op = static_cast<T*>(out);
    FG_DISPATCH_INDEX(idx_dtype, "embedding", [&] {
      const index_t* ip = static_cast<const index_t*>(idx);
      rows_with_bad(rows, dim, bad_index, [&](int64_t r, auto&& report) {
        int64_t i = int64_t(ip[r]);
        T* o = op + r * dim;
        if (i < 0 || i >= vocab) {
          report(r);
          for (int64_t c = 0; c < dim; ++c) o[c] = T(0.f);
          return;
        }
        std::copy(wp + i * dim, wp + (i + 1) * dim, o);
      });
    });
  });
}

void kv_cache_write(DType dtype, int64_t batch, int64_t T, int64_t row_elems, int64_t capacity,
                    const void* src_k, const void* src_v, int64_t src_batch, int64_t src_row,
                    const int32_t* pos, void* cache_k, void* cache_v, int64_t* bad_index) {
  const int64_t es = int64_t(dtype_size(dtype));
  rows_with_bad(batch, 2 * T * row_elems, bad_index, [&](int64_t b, auto&& report) {
    const int64_t p = pos[b];
    if (p < 0 || p + T > capacity) return report(b);
    for (auto [src, cache] : {std::pair<const void*, void*>{src_k, cache_k}, {src_v, cache_v}})
      for (int64_t t = 0; t < T; ++t)
        std::memcpy(static_cast<unsigned char*>(cache) + (b * capacity + p + t) * row_elems * es,
                    static_cast<const unsigned char*>(src) + (b * src_batch + t * src_row) * es,
                    size_t(row_elems * es));
  });
}

size_t embedding_backward_workspace(DType, int64_t, int64_t) { return 0; }

void embedding_backward(DType dtype, DType idx_dtype, int64_t rows, int64_t dim, int64_t vocab,
                        const void* gout, const void* idx, void* gweight, void*) {
  FG_DISPATCH_FLOAT(dtype, "embedding_backward", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* gp = static_cast<const T*>(gout);
    T* gw = static_cast<T*>(gweight);
    FG_DISPATCH_INDEX(idx_dtype, "embedding_backward", [&] {
      const index_t* ip = static_cast<const index_t*>(idx);
      // Threads over column ranges; rows in order within each: deterministic sums. For 16-bit
      // types each weight row is accumulated in float and rounded once at the end, as the
      // CUDA kernel does through its fp32 scratch.
      parallel_for(dim, rows, [&](int64_t c0, int64_t c1) {
        int64_t w = c1 - c0;
        std::vector<A> acc;
        std::vector<uint8_t> touched;
        if constexpr (!std::is_same_v<A, T>) {
          acc.assign(size_t(vocab * w), A(0));
          touched.assign(size_t(vocab), 0);
        }
        for (int64_t r = 0; r < rows; ++r) {
          int64_t i = int64_t(ip[r]);
          if (i < 0 || i >= vocab) continue;  // rejected by the forward
          const T* g = gp + r * dim;
          if constexpr (std::is_same_v<A, T>) {
            T* dst = gw + i * dim;
            for (int64_t c = c0; c < c1; ++c) dst[c] = T(A(dst[c]) + A(g[c]));
          } else {
            A* dst = acc.data() + i * w;
            touched[size_t(i)] = 1;
            for (int64_t c = c0; c < c1; ++c) dst[c - c0] += A(g[c]);
          }
        }
        if constexpr (!std::is_same_v<A, T>) {
          for (int64_t i = 0; i < vocab; ++i) {
            if (!touched[size_t(i)]) continue;
            for (int64_t c = c0; c < c1; ++c)
              gw[i * dim + c] = T(A(gw[i * dim + c]) + acc[size_t(i * w + c - c0)]);
          }
        }
      });
    });
  });
}

void dropout(DType dtype, int64_t n, const void* x, const void* residual, void* y, double p,
             uint64_t seed, uint64_t offset) {
  FG_DISPATCH_FLOAT(dtype, "dropout", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* xp = static_cast<const T*>(x);
    const T* rp = static_cast<const T*>(residual);
    T* yp = static_cast<T*>(y);
    const uint32_t threshold = dropout_threshold(p);
    // The scale is rounded to A once on the host; the CUDA kernel multiplies by the same
    // value, so the two devices give bitwise-equal results.
    const A scale = A(dropout_keep_scale(p));
    // Groups of 8 elements, one Philox block each (philox.h's dropout_block).
    parallel_for((n + 7) / 8, 128, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const Philox4 r = dropout_block(seed, offset, uint64_t(g));
        const int64_t end = std::min(n, 8 * g + 8);
        for (int64_t i = 8 * g; i < end; ++i) {
          const bool keep = dropout_bits16(r, uint32_t(i & 7)) >= threshold;
          const A d = keep ? A(xp[i]) * scale : A(0);
          yp[i] = rp ? T(A(rp[i]) + d) : T(d);
        }
      }
    });
  });
}

void gather(DType dtype, DType idx_dtype, int64_t outer, int64_t len_in, int64_t len_idx,
            int64_t inner, const void* in, const void* index, void* out, int64_t* bad_index) {
  FG_DISPATCH_ALL(dtype, "gather", [&] {
    using T = scalar_t;
    const T* ip = static_cast<const T*>(in);
    T* op = static_cast<T*>(out);
    FG_DISPATCH_INDEX(idx_dtype, "gather", [&] {
      const index_t* xp = static_cast<const index_t*>(index);
      rows_with_bad(outer * len_idx, inner, bad_index, [&](int64_t oj, auto&& report) {
        int64_t o = oj / len_idx;
        for (int64_t i = 0; i < inner; ++i) {
          int64_t e = oj * inner + i;
          int64_t t = int64_t(xp[e]);
          if (t < 0 || t >= len_in) {
            report(e);
            op[e] = T(0);
            continue;
          }
          op[e] = ip[(o * len_in + t) * inner + i];
        }
      });
    });
  });
}

size_t scatter_add_workspace(DType, int64_t) { return 0; }

void scatter_add(DType dtype, DType idx_dtype, int64_t outer, int64_t len_in, int64_t len_idx,
                 int64_t inner, const void* gout, const void* index, void* gin, void*) {
  FG_DISPATCH_FLOAT(dtype, "scatter_add", [&] {
    using T = scalar_t;
    using A = acc_t<T>;
    const T* gp = static_cast<const T*>(gout);
    T* gi = static_cast<T*>(gin);
    FG_DISPATCH_INDEX(idx_dtype, "scatter_add", [&] {
      const index_t* xp = static_cast<const index_t*>(index);
      // Threads over `outer` slabs (disjoint in gin); within a slab j runs in order. 16-bit
      // sums go through a float slab and are rounded once, as on CUDA.
      parallel_for(outer, len_idx * inner, [&](int64_t o0, int64_t o1) {
        std::vector<A> acc(size_t(len_in * inner));
        for (int64_t o = o0; o < o1; ++o) {
          T* dst = gi + o * len_in * inner;
          for (int64_t k = 0; k < len_in * inner; ++k) acc[size_t(k)] = A(dst[k]);
          for (int64_t j = 0; j < len_idx; ++j)
            for (int64_t i = 0; i < inner; ++i) {
              int64_t e = (o * len_idx + j) * inner + i;
              int64_t t = int64_t(xp[e]);
              if (t < 0 || t >= len_in) continue;  // rejected by the forward
              acc[size_t(t * inner + i)] += A(gp[e]);
            }
          for (int64_t k = 0; k < len_in * inner; ++k) dst[k] = T(acc[size_t(k)]);
        }
      });
    });
  });
}

}  // namespace fg::cpu
