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
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/philox.h"
#include "kernels/attention/attention.h"
#include "kernels/common/convert.h"

namespace fg {
namespace {

constexpr int64_t kTileQ = 64;  // divides kBlockMaskTileQ, so block-mask tiles are skipped whole
constexpr int64_t kTileK = 64;
static_assert(kBlockMaskTileQ % kTileQ == 0 && kBlockMaskTileK % kTileK == 0, "tile sizes");
static_assert(kTileK <= 64 && kTileK % 16 == 0, "a key tile's dropout bits fit one uint64_t");

// The softmax scale and dropout constants of one call, in the accumulation type A.
template <typename A> struct Constants {
  A scale;
  bool dropout;
  uint32_t threshold;
  A keep_scale;  // 1 / (1 - p)
  explicit Constants(const AttentionParams& p)
      : scale(A(p.softmax_scale)),
        dropout(p.dropout_p > 0.0),
        threshold(attention_dropout_threshold(p.dropout_p)),
        keep_scale(A(attention_dropout_keep_scale(p.dropout_p))) {}
  // Which of columns k0 .. k0 + nk - 1 of row i survive dropout (bit c: column k0 + c), by
  // attention_dropout_keep's rule, one Philox call per 16 columns (k0 is a multiple of 16).
  uint64_t keep_mask(const AttentionParams& p, int64_t b, int64_t h, int64_t i, int64_t k0,
                     int64_t nk) const {
    uint64_t bits = 0;
    for (int64_t g = 0; 16 * g < nk; ++g)
      bits |= uint64_t(attention_dropout_keep16(p.seed, p.offset, uint32_t(p.batch_index_base + b),
                                                uint32_t(h), uint32_t(p.Hq), uint32_t(i),
                                                uint32_t(k0 / 16 + g), threshold))
              << (16 * g);
    return bits;
  }
};

// Copies rows [r0, r1) of one head of a strided [*, N, H, D] tensor into a dense [rows, D]
// tile in the accumulation type; rows past r1 of the tile are zeroed.
template <typename T, typename A>
void load_tile(const T* base, int64_t seq_stride, int64_t r0, int64_t r1, int64_t rows, int64_t D,
               A* tile) {
  for (int64_t r = 0; r < rows; ++r) {
    A* dst = tile + r * D;
    if (r0 + r < r1) {
      const T* src = base + (r0 + r) * seq_stride;
      for (int64_t d = 0; d < D; ++d) dst[d] = convert<A>(src[d]);
    } else {
      std::fill(dst, dst + D, A(0));
    }
  }
}

// A tile transposed: tileT[d * cols + r] = tile[r * D + d], for the row-times-tile products.
template <typename A> void transpose_tile(const A* tile, int64_t rows, int64_t D, A* tileT) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t d = 0; d < D; ++d) tileT[d * rows + r] = tile[r * D + d];
}

// out[c] = <a, tile row c> for c < n, from the transposed tile (cols rows wide): the loop over
// c is innermost, so it vectorises across keys, while each out[c] still sums over d in order
// (the same additions as a dot product, hence the same bits).
template <typename A>
inline void row_times_tile(const A* a, const A* tileT, int64_t cols, int64_t n, int64_t D, A* out) {
  std::fill(out, out + n, A(0));
  for (int64_t d = 0; d < D; ++d) {
    const A ad = a[d];
    const A* t = tileT + d * cols;
    for (int64_t c = 0; c < n; ++c) out[c] += ad * t[c];
  }
}

// The key tiles [k0, k1) that some of the query rows [q0, q1) of head h see, up to the causal
// end: each is loaded from k and v (the kv head) into kt and vt, then f(k0, k1 - k0, vis) runs.
// The other tiles are never loaded.
template <typename T, typename A, typename F>
void for_each_key_tile(const AttentionParams& p, int64_t h, int64_t q0, int64_t q1, const T* k,
                       const T* v, A* kt, A* vt, F f) {
  for (int64_t k0 = 0; k0 < key_end(p, q1); k0 += kTileK) {
    const int64_t k1 = std::min(k0 + kTileK, p.Nk);
    const TileVisibility vis = tile_visibility(p, h, q0, q1, k0, k1);
    if (vis == TileVisibility::empty) continue;
    load_tile(k, p.k_seq_stride, k0, k1, kTileK, p.D, kt);
    load_tile(v, p.v_seq_stride, k0, k1, kTileK, p.D, vt);
    f(k0, k1 - k0, vis);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T> void forward_cpu(const AttentionParams& p) {
  using A = typename acc_type<T>::type;
  const int64_t D = p.D;
  const Constants<A> sd(p);
  const int64_t group = p.Hq / p.Hkv;
  const A neg_inf = -std::numeric_limits<A>::infinity();

  // One task per (batch, head); tasks write disjoint outputs.
  const auto run_task = [&](int64_t task) {
    const int64_t b = task / p.Hq, h = task % p.Hq, hk = h / group;
    const T* q = p.q_head<const T>(b, h);
    const T* k = p.k_head<const T>(b, hk);
    const T* v = p.v_head<const T>(b, hk);
    T* o = p.o_head<T>(b, h);
    A* lse = p.lse_row<A>(b, h);

    std::vector<A> qt(kTileQ * D), kt(kTileK * D), vt(kTileK * D), ktT(kTileK * D), s(kTileK);
    std::vector<A> acc(kTileQ * D), m(kTileQ), l(kTileQ);
    for (int64_t q0 = 0; q0 < p.Nq; q0 += kTileQ) {
      const int64_t q1 = std::min(q0 + kTileQ, p.Nq), nq = q1 - q0;
      load_tile(q, p.q_seq_stride, q0, q1, kTileQ, D, qt.data());
      std::fill(acc.begin(), acc.end(), A(0));
      std::fill(m.begin(), m.end(), neg_inf);
      std::fill(l.begin(), l.end(), A(0));

      for_each_key_tile(p, h, q0, q1, k, v, kt.data(), vt.data(),
                        [&](int64_t k0, int64_t nk, TileVisibility vis) {
        transpose_tile(kt.data(), kTileK, D, ktT.data());
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t i = q0 + r;
          A tile_max = neg_inf;
          row_times_tile(&qt[r * D], ktT.data(), kTileK, nk, D, s.data());
          for (int64_t c = 0; c < nk; ++c) {
            const bool ok = vis == TileVisibility::full || attention_allowed(p, h, i, k0 + c);
            s[c] = ok ? sd.scale * s[c] : neg_inf;
            tile_max = std::max(tile_max, s[c]);
          }
          if (tile_max == neg_inf) continue;  // nothing visible in this tile for this row
          const A m_new = std::max(m[r], tile_max);
          // Rescale what was accumulated under the old max (exp(-inf) = 0 on the first tile).
          const A alpha = std::exp(m[r] - m_new);
          A* accr = &acc[r * D];
          l[r] *= alpha;
          for (int64_t d = 0; d < D; ++d) accr[d] *= alpha;
          const uint64_t kept = sd.dropout ? sd.keep_mask(p, b, h, i, k0, nk) : ~uint64_t(0);
          for (int64_t c = 0; c < nk; ++c) {
            if (s[c] == neg_inf) continue;
            A pc = std::exp(s[c] - m_new);
            l[r] += pc;  // the normaliser uses the undropped probabilities
            if (sd.dropout) {
              if (!((kept >> c) & 1u)) continue;
              pc *= sd.keep_scale;
            }
            const A* vr = &vt[c * D];
            for (int64_t d = 0; d < D; ++d) accr[d] += pc * vr[d];
          }
          m[r] = m_new;
        }
      });

      for (int64_t r = 0; r < nq; ++r) {
        T* orow = o + (q0 + r) * p.o_seq_stride;
        if (l[r] == A(0)) {  // fully masked row: O = 0, LSE = -inf
          for (int64_t d = 0; d < D; ++d) orow[d] = convert<T>(A(0));
          lse[q0 + r] = neg_inf;
        } else {
          const A inv = A(1) / l[r];
          for (int64_t d = 0; d < D; ++d) orow[d] = convert<T>(acc[r * D + d] * inv);
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
  using A = typename acc_type<T>::type;
  const int64_t D = p.D;
  const Constants<A> sd(p);
  const int64_t group = p.Hq / p.Hkv;

  // One task per (batch, kv head): it owns dK, dV of that kv head and dQ of the query heads
  // sharing it, so the sum over the group needs no synchronisation.
  const auto run_task = [&](int64_t task) {
    const int64_t b = task / p.Hkv, hk = task % p.Hkv;
    const T* k = p.k_head<const T>(b, hk);
    const T* v = p.v_head<const T>(b, hk);
    std::vector<A> dk_acc(p.Nk * D, A(0)), dv_acc(p.Nk * D, A(0));
    std::vector<A> qt(kTileQ * D), dot_t(kTileQ * D), kt(kTileK * D), vt(kTileK * D);
    std::vector<A> dq_t(kTileQ * D), Di(kTileQ), lse_t(kTileQ);
    std::vector<A> ktT(kTileK * D), vtT(kTileK * D), srow(kTileK), dprow(kTileK);

    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      const T* q = p.q_head<const T>(b, h);
      const T* o = p.o_head<const T>(b, h);
      const T* dO = p.do_head<const T>(b, h);
      T* dq = p.dq_head<T>(b, h);
      const A* lse = p.lse_row<const A>(b, h);

      for (int64_t q0 = 0; q0 < p.Nq; q0 += kTileQ) {
        const int64_t q1 = std::min(q0 + kTileQ, p.Nq), nq = q1 - q0;
        load_tile(q, p.q_seq_stride, q0, q1, kTileQ, D, qt.data());
        load_tile(dO, p.do_seq_stride, q0, q1, kTileQ, D, dot_t.data());
        std::fill(dq_t.begin(), dq_t.end(), A(0));
        for (int64_t r = 0; r < nq; ++r) {
          // D_i = rowsum(dO * O), from the stored (rounded) O, in the accumulation type.
          const T* orow = o + (q0 + r) * p.o_seq_stride;
          A sum = 0;
          for (int64_t d = 0; d < D; ++d) sum += dot_t[r * D + d] * convert<A>(orow[d]);
          Di[r] = sum;
          lse_t[r] = lse[q0 + r];
        }

        for_each_key_tile(p, h, q0, q1, k, v, kt.data(), vt.data(),
                          [&](int64_t k0, int64_t nk, TileVisibility vis) {
          transpose_tile(kt.data(), kTileK, D, ktT.data());
          transpose_tile(vt.data(), kTileK, D, vtT.data());
          for (int64_t r = 0; r < nq; ++r) {
            const int64_t i = q0 + r;
            const A* qr = &qt[r * D];
            const A* dor = &dot_t[r * D];
            A* dqr = &dq_t[r * D];
            row_times_tile(qr, ktT.data(), kTileK, nk, D, srow.data());    // S, unscaled
            row_times_tile(dor, vtT.data(), kTileK, nk, D, dprow.data());  // dP = dO V^T
            const uint64_t kept = sd.dropout ? sd.keep_mask(p, b, h, i, k0, nk) : ~uint64_t(0);
            for (int64_t c = 0; c < nk; ++c) {
              const int64_t j = k0 + c;
              if (vis != TileVisibility::full && !attention_allowed(p, h, i, j)) continue;
              const A* kc = &kt[c * D];
              // P = exp(S - LSE): the forward's probabilities, recomputed.
              const A pij = std::exp(sd.scale * srow[c] - lse_t[r]);
              const A dp = dprow[c];
              const bool keep = ((kept >> c) & 1u) != 0;
              const A zs = keep ? (sd.dropout ? sd.keep_scale : A(1)) : A(0);  // Z / (1 - p)
              const A pd = pij * zs;
              const A ds = pij * (dp * zs - Di[r]) * sd.scale;  // dS, the scale of S folded in
              A* dvj = &dv_acc[j * D];
              A* dkj = &dk_acc[j * D];
              for (int64_t d = 0; d < D; ++d) {
                dvj[d] += pd * dor[d];
                dkj[d] += ds * qr[d];
                dqr[d] += ds * kc[d];
              }
            }
          }
        });
        for (int64_t r = 0; r < nq; ++r) {
          T* row = dq + (q0 + r) * p.dq_seq_stride;
          for (int64_t d = 0; d < D; ++d) row[d] = convert<T>(dq_t[r * D + d]);
        }
      }
    }
    T* dk = p.dk_head<T>(b, hk);
    T* dv = p.dv_head<T>(b, hk);
    for (int64_t j = 0; j < p.Nk; ++j)
      for (int64_t d = 0; d < D; ++d) {
        dk[j * p.dk_seq_stride + d] = convert<T>(dk_acc[j * D + d]);
        dv[j * p.dv_seq_stride + d] = convert<T>(dv_acc[j * D + d]);
      }
  };
  parallel_for(p.B * p.Hkv, p.Nq * p.Nk * p.D, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) run_task(t);
  });
}

}  // namespace

void flash_attention_forward_cpu(const AttentionParams& p) {
  check_attention_params(p, /*backward=*/false, /*cuda=*/false);
  if (!p.seqused_k) {
    FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cpu", [&] { forward_cpu<scalar_t>(p); });
    return;
  }
  // Per-entry key lengths: each batch entry is a call of its own over its first keys.
  const size_t es = dtype_size(p.dtype), ls = p.dtype == DType::f64 ? 8 : 4;
  auto at = [](void* base, int64_t elems, size_t size) {
    return static_cast<void*>(static_cast<unsigned char*>(base) + elems * int64_t(size));
  };
  for (int64_t b = 0; b < p.B; ++b) {
    const int64_t nk = p.seqused_k[b];
    FG_CHECK(nk >= 0 && nk <= p.Nk, "flash_attention_forward_cpu: seqused_k[", b, "] = ", nk,
             " is outside [0, Nk = ", p.Nk, "]");
    AttentionParams e = p;
    e.B = 1;
    e.Nk = nk;
    e.seqused_k = nullptr;
    e.batch_index_base = p.batch_index_base + b;
    e.q = at(p.q, b * p.q_batch_stride, es);
    e.k = at(p.k, b * p.k_batch_stride, es);
    e.v = at(p.v, b * p.v_batch_stride, es);
    e.o = at(p.o, b * p.o_batch_stride, es);
    e.lse = at(p.lse, b * p.Hq * p.Nq, ls);
    if (nk > 0) {
      FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cpu", [&] { forward_cpu<scalar_t>(e); });
      continue;
    }
    // No keys: every row is fully masked (O = 0, LSE = -inf), as in every path.
    FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cpu", [&] {
      using A = typename acc_type<scalar_t>::type;
      for (int64_t h = 0; h < p.Hq; ++h) {
        A* lse = e.lse_row<A>(0, h);
        for (int64_t i = 0; i < p.Nq; ++i) {
          scalar_t* orow = e.o_head<scalar_t>(0, h) + i * p.o_seq_stride;
          for (int64_t d = 0; d < p.D; ++d) orow[d] = convert<scalar_t>(A(0));
          lse[i] = -std::numeric_limits<A>::infinity();
        }
      }
    });
  }
}

void flash_attention_backward_cpu(const AttentionParams& p) {
  check_attention_params(p, /*backward=*/true, /*cuda=*/false);
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_backward_cpu", [&] { backward_cpu<scalar_t>(p); });
}

}  // namespace fg
