// CPU FlashAttention, forward and backward, for f32, f64, bf16 and f16.
//
// The same algorithm as the CUDA kernels, written as plain loops: queries are processed in
// tiles of 64 rows, keys in tiles of 64 columns, and only a 64 x 64 score tile is ever held
// (never an Nq x Nk matrix). The forward keeps, per query row, the running max m, the running
// sum l of exp(s - m) and the unnormalised output accumulator, rescaling both when the max
// grows (the online softmax), and writes O = acc / l and LSE = m + log l. The backward
// recomputes P = exp(S - LSE) tile by tile, regenerates the dropout mask from the shared
// Philox definition and accumulates dQ, dK, dV.
//
// Arithmetic is in double for f64 and in float for the other dtypes. Work is split over
// threads by (batch, head) in the forward and by (batch, kv head) in the backward; each task
// owns its outputs, so results do not depend on the number of threads (deterministic).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/dispatch.h"
#include "kernels/attention/attention.h"
#include "core/philox.h"
#include "core/error.h"

namespace fg {
namespace {

constexpr int64_t kTileQ = 64;  // divides kBlockMaskTileQ, so block-mask tiles are skipped whole
constexpr int64_t kTileK = 64;
static_assert(kBlockMaskTileQ % kTileQ == 0 && kBlockMaskTileK % kTileK == 0, "tile sizes");

template <typename T> struct CpuAcc { using type = float; };
template <> struct CpuAcc<double> { using type = double; };

template <typename A, typename T> inline A to_acc(T x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return A(x);
  else return A(float(x));
}
template <typename T, typename A> inline T from_acc(A x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return T(x);
  else return T(float(x));
}

inline float acc_exp(float x) { return std::exp(x); }
inline double acc_exp(double x) { return std::exp(x); }


// Copies rows [r0, r1) of one head of a strided [*, N, H, D] tensor into a dense [rows, D]
// tile in the accumulation type; rows past r1 of the tile are zeroed.
template <typename T, typename A>
void load_tile(const T* base, int64_t seq_stride, int64_t r0, int64_t r1, int64_t rows, int64_t D,
               A* tile) {
  for (int64_t r = 0; r < rows; ++r) {
    A* dst = tile + r * D;
    if (r0 + r < r1) {
      const T* src = base + (r0 + r) * seq_stride;
      for (int64_t d = 0; d < D; ++d) dst[d] = to_acc<A>(src[d]);
    } else {
      std::fill(dst, dst + D, A(0));
    }
  }
}

template <typename A> inline A dot(const A* a, const A* b, int64_t D) {
  A s = 0;
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// The end of the key range query rows [q0, q1) can see under causal masking (exclusive).
inline int64_t causal_key_end(const AttentionParams& p, int64_t q1) {
  if (!p.causal) return p.Nk;
  return std::clamp<int64_t>(q1 - 1 + p.Nk - p.Nq + 1, 0, p.Nk);
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T> void forward_cpu(const AttentionParams& p) {
  using A = typename CpuAcc<T>::type;
  const int64_t D = p.D;
  const A scale = A(p.softmax_scale);
  const bool dropout = p.dropout_p > 0.0;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const A keep_scale = A(1.0 / (1.0 - p.dropout_p));
  const int64_t group = p.Hq / p.Hkv;
  const A neg_inf = -std::numeric_limits<A>::infinity();

  // One task per (batch, head); tasks write disjoint outputs.
  const auto run_task = [&](int64_t task) {
    const int64_t b = task / p.Hq, h = task % p.Hq, hk = h / group;
    const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
    const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
    T* o = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
    A* lse = static_cast<A*>(p.lse) + (b * p.Hq + h) * p.Nq;

    std::vector<A> qt(kTileQ * D), kt(kTileK * D), vt(kTileK * D), s(kTileK);
    std::vector<A> acc(kTileQ * D), m(kTileQ), l(kTileQ);
    for (int64_t q0 = 0; q0 < p.Nq; q0 += kTileQ) {
      const int64_t q1 = std::min(q0 + kTileQ, p.Nq), nq = q1 - q0;
      load_tile(q, p.q_seq_stride, q0, q1, kTileQ, D, qt.data());
      std::fill(acc.begin(), acc.end(), A(0));
      std::fill(m.begin(), m.end(), neg_inf);
      std::fill(l.begin(), l.end(), A(0));

      const int64_t kend = causal_key_end(p, q1);
      for (int64_t k0 = 0; k0 < kend; k0 += kTileK) {
        const int64_t k1 = std::min(k0 + kTileK, p.Nk), nk = k1 - k0;
        const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, k1);
        if (vis == TileVisibility::empty) continue;  // never loaded
        load_tile(k, p.k_seq_stride, k0, k1, kTileK, D, kt.data());
        load_tile(v, p.v_seq_stride, k0, k1, kTileK, D, vt.data());

        for (int64_t r = 0; r < nq; ++r) {
          const int64_t i = q0 + r;
          A tile_max = neg_inf;
          for (int64_t c = 0; c < nk; ++c) {
            const bool ok = vis == TileVisibility::full || attention_allowed(p, h, i, k0 + c);
            s[c] = ok ? scale * dot(&qt[r * D], &kt[c * D], D) : neg_inf;
            tile_max = std::max(tile_max, s[c]);
          }
          if (tile_max == neg_inf) continue;  // nothing visible in this tile for this row
          const A m_new = std::max(m[r], tile_max);
          // Rescale what was accumulated under the old max (exp(-inf) = 0 on the first tile).
          const A alpha = acc_exp(m[r] - m_new);
          A* accr = &acc[r * D];
          l[r] *= alpha;
          for (int64_t d = 0; d < D; ++d) accr[d] *= alpha;
          for (int64_t c = 0; c < nk; ++c) {
            if (s[c] == neg_inf) continue;
            A pc = acc_exp(s[c] - m_new);
            l[r] += pc;  // the normaliser uses the undropped probabilities
            if (dropout) {
              if (!attention_dropout_keep(p.seed, p.offset, uint32_t(b), uint32_t(h),
                                          uint32_t(p.Hq), uint32_t(i), uint32_t(k0 + c), threshold))
                continue;
              pc *= keep_scale;
            }
            const A* vr = &vt[c * D];
            for (int64_t d = 0; d < D; ++d) accr[d] += pc * vr[d];
          }
          m[r] = m_new;
        }
      }

      for (int64_t r = 0; r < nq; ++r) {
        T* orow = o + (q0 + r) * p.o_seq_stride;
        if (l[r] == A(0)) {  // fully masked row: O = 0, LSE = -inf
          for (int64_t d = 0; d < D; ++d) orow[d] = from_acc<T>(A(0));
          lse[q0 + r] = neg_inf;
        } else {
          const A inv = A(1) / l[r];
          for (int64_t d = 0; d < D; ++d) orow[d] = from_acc<T>(acc[r * D + d] * inv);
          lse[q0 + r] = m[r] + std::log(l[r]);
        }
      }
    }
  };
  parallel_for(p.B * p.Hq, p.Nq * p.Nk * p.D, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) run_task(t);
  });
}

// ---------------------------------------------------------------------------------------------
// Backward

template <typename T> void backward_cpu(const AttentionParams& p) {
  using A = typename CpuAcc<T>::type;
  const int64_t D = p.D;
  const A scale = A(p.softmax_scale);
  const bool dropout = p.dropout_p > 0.0;
  const uint32_t threshold = dropout_threshold(p.dropout_p);
  const A keep_scale = A(1.0 / (1.0 - p.dropout_p));
  const int64_t group = p.Hq / p.Hkv;

  // One task per (batch, kv head): it owns dK, dV of that kv head and dQ of the query heads
  // sharing it, so the sum over the group needs no synchronisation.
  // One task per (batch, head); tasks write disjoint outputs.
  const auto run_task = [&](int64_t task) {
    const int64_t b = task / p.Hkv, hk = task % p.Hkv;
    const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
    const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
    std::vector<A> dk_acc(p.Nk * D, A(0)), dv_acc(p.Nk * D, A(0));
    std::vector<A> qt(kTileQ * D), dot_t(kTileQ * D), kt(kTileK * D), vt(kTileK * D);
    std::vector<A> dq_t(kTileQ * D), Di(kTileQ), lse_t(kTileQ);

    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
      const T* o = static_cast<const T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
      const T* dO = static_cast<const T*>(p.do_) + b * p.do_batch_stride + h * p.do_head_stride;
      T* dq = static_cast<T*>(p.dq) + b * p.dq_batch_stride + h * p.dq_head_stride;
      const A* lse = static_cast<const A*>(p.lse) + (b * p.Hq + h) * p.Nq;

      for (int64_t q0 = 0; q0 < p.Nq; q0 += kTileQ) {
        const int64_t q1 = std::min(q0 + kTileQ, p.Nq), nq = q1 - q0;
        load_tile(q, p.q_seq_stride, q0, q1, kTileQ, D, qt.data());
        load_tile(dO, p.do_seq_stride, q0, q1, kTileQ, D, dot_t.data());
        std::fill(dq_t.begin(), dq_t.end(), A(0));
        for (int64_t r = 0; r < nq; ++r) {
          // D_i = rowsum(dO * O), from the stored (rounded) O, in the accumulation type.
          const T* orow = o + (q0 + r) * p.o_seq_stride;
          A sum = 0;
          for (int64_t d = 0; d < D; ++d) sum += dot_t[r * D + d] * to_acc<A>(orow[d]);
          Di[r] = sum;
          lse_t[r] = lse[q0 + r];
        }

        const int64_t kend = causal_key_end(p, q1);
        for (int64_t k0 = 0; k0 < kend; k0 += kTileK) {
          const int64_t k1 = std::min(k0 + kTileK, p.Nk), nk = k1 - k0;
          const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, k1);
          if (vis == TileVisibility::empty) continue;
          load_tile(k, p.k_seq_stride, k0, k1, kTileK, D, kt.data());
          load_tile(v, p.v_seq_stride, k0, k1, kTileK, D, vt.data());

          for (int64_t r = 0; r < nq; ++r) {
            const int64_t i = q0 + r;
            const A* qr = &qt[r * D];
            const A* dor = &dot_t[r * D];
            A* dqr = &dq_t[r * D];
            for (int64_t c = 0; c < nk; ++c) {
              const int64_t j = k0 + c;
              if (vis != TileVisibility::full && !attention_allowed(p, h, i, j)) continue;
              const A* kc = &kt[c * D];
              const A* vc = &vt[c * D];
              // P = exp(S - LSE): the forward's probabilities, recomputed.
              const A pij = acc_exp(scale * dot(qr, kc, D) - lse_t[r]);
              const A dp = dot(dor, vc, D);
              bool keep = true;
              if (dropout)
                keep = attention_dropout_keep(p.seed, p.offset, uint32_t(b), uint32_t(h),
                                              uint32_t(p.Hq), uint32_t(i), uint32_t(j), threshold);
              const A zs = keep ? (dropout ? keep_scale : A(1)) : A(0);  // Z / (1 - p)
              const A pd = pij * zs;
              const A ds = pij * (dp * zs - Di[r]) * scale;  // dS, with the scale of S folded in
              A* dvj = &dv_acc[j * D];
              A* dkj = &dk_acc[j * D];
              for (int64_t d = 0; d < D; ++d) {
                dvj[d] += pd * dor[d];
                dkj[d] += ds * qr[d];
                dqr[d] += ds * kc[d];
              }
            }
          }
        }
        for (int64_t r = 0; r < nq; ++r) {
          T* row = dq + (q0 + r) * p.dq_seq_stride;
          for (int64_t d = 0; d < D; ++d) row[d] = from_acc<T>(dq_t[r * D + d]);
        }
      }
    }
    T* dk = static_cast<T*>(p.dk) + b * p.dk_batch_stride + hk * p.dk_head_stride;
    T* dv = static_cast<T*>(p.dv) + b * p.dv_batch_stride + hk * p.dv_head_stride;
    for (int64_t j = 0; j < p.Nk; ++j)
      for (int64_t d = 0; d < D; ++d) {
        dk[j * p.dk_seq_stride + d] = from_acc<T>(dk_acc[j * D + d]);
        dv[j * p.dv_seq_stride + d] = from_acc<T>(dv_acc[j * D + d]);
      }
  };
  parallel_for(p.B * p.Hkv, p.Nq * p.Nk * p.D, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) run_task(t);
  });
}

}  // namespace

void flash_attention_forward_cpu(const AttentionParams& p) {
  check_attention_params(p, /*backward=*/false, /*cuda=*/false);
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cpu", [&] { forward_cpu<scalar_t>(p); });
}

void flash_attention_backward_cpu(const AttentionParams& p) {
  check_attention_params(p, /*backward=*/true, /*cuda=*/false);
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_backward_cpu", [&] { backward_cpu<scalar_t>(p); });
}

}  // namespace fg
