// What the two decode kernels (forward.cuh, cluster.cuh) share: the lanes' division of a key,
// the 16-byte unpacking, which query row a block row is, one thread's state and steps (Lanes:
// the query slices, scoring, the online softmax, the lane groups' merge), and the merge of a
// row's split parts (merge_parts).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/numeric.cuh"
#include "kernels/attention/decode/splits.h"

namespace fg {
namespace attn {
namespace decode {

template <typename T, int D> struct Shape {
  static constexpr int kVec = 16 / int(sizeof(T));          // elements per 16-byte load
  static constexpr int kLanesPerKey = D / kVec;             // lanes that share one key
  static constexpr int kGroups = kThreads / kLanesPerKey;   // keys a block reads at once
  static_assert(kLanesPerKey >= 1 && kLanesPerKey <= 32 && 32 % kLanesPerKey == 0,
                "a key's lanes must lie within one warp");
};

// Eight 16-bit or four 32-bit elements of a 16-byte word, as float.
template <typename T, int N> FG_ATTN_DEV void unpack(const uint4& w, float (&out)[N]) {
  if constexpr (std::is_same_v<T, float>) {
    out[0] = __uint_as_float(w.x), out[1] = __uint_as_float(w.y);
    out[2] = __uint_as_float(w.z), out[3] = __uint_as_float(w.w);
  } else {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, float16>) {
        out[2 * i] = __half2float(__ushort_as_half(uint16_t(words[i] & 0xffffu)));
        out[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(words[i] >> 16)));
      } else {  // bf16: the high half of an fp32
        out[2 * i] = __uint_as_float(words[i] << 16);
        out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      }
    }
  }
}

// Row r (0 .. decode_rows - 1) of kv head hk: new token qi of query head h.
struct Row {
  int64_t h, qi;
};
FG_ATTN_DEV Row row_of(const AttentionParams& p, int64_t hk, int64_t r) {
  const int64_t group = p.Hq / p.Hkv;
  return {hk * group + r % group, r / group};
}

constexpr float kLog2e = 1.4426950408889634f;

// One thread's share of a decode block (both kernels): the lane group that scores one key at a
// time (group) and this lane's 16 bytes of it (sub); this lane's slice of each query row,
// pre-scaled by softmax_scale * log2 e; the last key each row may see; and the group's online
// softmax per row (running max m and sum l, log2 domain, and this lane's output slice).
template <typename T, int D, int ROWS> struct Lanes {
  using S = Shape<T, D>;
  static constexpr int V = S::kVec, LPK = S::kLanesPerKey, G = S::kGroups;
  int group, sub;
  unsigned lanes;  // the lanes of this key group, for the shuffles of a dot product
  float q[ROWS][V];
  int64_t last[ROWS];
  int64_t k_end;  // one past the last key any row sees
  float m[ROWS], l[ROWS], acc[ROWS][V];

  // The last key that row r of kv head hk in entry b sees: -1 for a padding row (r at or past
  // decode_rows: no key, zero query). Entry b holds all Nk keys, or its own length (params.h,
  // seqused_k; never past the cache).
  FG_ATTN_DEV static int64_t last_key(const AttentionParams& p, int64_t b, int64_t hk, int64_t r) {
    if (r >= decode_rows(p)) return -1;
    const int64_t nk = p.seqused_k ? min64(int64_t(p.seqused_k[b]), p.Nk) : p.Nk;
    const Row row = row_of(p, hk, r);
    return p.causal ? min64(row.qi + nk - p.Nq, nk - 1) : nk - 1;  // causal_last_key at nk
  }
  // One past the last key that any of the rows row0 .. row0 + ROWS - 1 sees (no query load:
  // the cluster form starts its copies of the keys before the queries arrive).
  FG_ATTN_DEV static int64_t key_end(const AttentionParams& p, int64_t b, int64_t hk,
                                     int64_t row0) {
    int64_t end = 0;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) end = max64(end, last_key(p, b, hk, row0 + r) + 1);
    return end;
  }

  // The rows row0 .. row0 + ROWS - 1 of kv head hk in entry b.
  FG_ATTN_DEV Lanes(const AttentionParams& p, int64_t b, int64_t hk, int64_t row0) {
    group = int(threadIdx.x) / LPK, sub = int(threadIdx.x) % LPK;
    lanes = LPK == 32 ? 0xffffffffu : ((1u << LPK) - 1u) << ((int(threadIdx.x) % 32) / LPK * LPK);
    const float scale = float(p.softmax_scale) * kLog2e;
    k_end = 0;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      last[r] = last_key(p, b, hk, row0 + r);
      k_end = max64(k_end, last[r] + 1);
      m[r] = neg_inf<float>(), l[r] = 0.f;
#pragma unroll
      for (int e = 0; e < V; ++e) q[r][e] = acc[r][e] = 0.f;
      if (row0 + r >= decode_rows(p)) continue;  // a padding row
      const Row row = row_of(p, hk, row0 + r);
      const T* qp = p.q_head<const T>(b, row.h) + row.qi * p.q_seq_stride + sub * V;
      unpack<T>(*reinterpret_cast<const uint4*>(qp), q[r]);
#pragma unroll
      for (int e = 0; e < V; ++e) q[r][e] *= scale;
    }
  }

  // Scores of U keys (this lane's 16 bytes of each) for every row: partial dot products, then
  // the shuffle trees, all independent of one another. Every lane of a group runs the same
  // code (the keys of a group are the same), so the group's shuffles are convergent.
  template <int U> FG_ATTN_DEV void score(const uint4 (&kw)[U], float (&x)[U][ROWS]) const {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[V];
      unpack<T>(kw[u], kf);
#pragma unroll
      for (int r = 0; r < ROWS; ++r) {
        x[u][r] = 0.f;
#pragma unroll
        for (int e = 0; e < V; ++e) x[u][r] = fmaf(q[r][e], kf[e], x[u][r]);
      }
    }
#pragma unroll
    for (int o = LPK / 2; o > 0; o /= 2)
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < ROWS; ++r) x[u][r] += __shfl_xor_sync(lanes, x[u][r], o);
  }

  // One online-softmax update per row for U keys: their scores (masked ones -inf) and values.
  template <int U> FG_ATTN_DEV void update(const float (&x)[U][ROWS], const uint4 (&vw)[U]) {
    float vf[U][V];
#pragma unroll
    for (int u = 0; u < U; ++u) unpack<T>(vw[u], vf[u]);
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      float mx = x[0][r];
#pragma unroll
      for (int u = 1; u < U; ++u) mx = fmaxf(mx, x[u][r]);
      if (mx == neg_inf<float>()) continue;  // nothing visible to this row in this step
      const float m_new = fmaxf(m[r], mx), alpha = exp2f(m[r] - m_new);
      float pj[U], sum = 0.f;
#pragma unroll
      for (int u = 0; u < U; ++u) sum += (pj[u] = exp2f(x[u][r] - m_new));
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        float a = acc[r][e] * alpha;
#pragma unroll
        for (int u = 0; u < U; ++u) a = fmaf(pj[u], vf[u][e], a);
        acc[r][e] = a;
      }
      m[r] = m_new;
    }
  }

  // Merges the block's lane groups: each writes its state to s_m, s_l [G][ROWS] and s_acc
  // [G][ROWS][D] (shared), then every thread finishes some (row r, element d) of the rows
  // below `rows` and calls emit(r, d, o, lse2): the block's normalised output and its
  // log2-sum-exp (O = 0 and -inf for a row that saw no key).
  template <typename Emit>
  FG_ATTN_DEV void merge(float (*s_m)[ROWS], float (*s_l)[ROWS], float* s_acc, int64_t rows,
                         Emit&& emit) const {
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      if (sub == 0) s_m[group][r] = m[r], s_l[group][r] = l[r];
#pragma unroll
      for (int e = 0; e < V; ++e) s_acc[(group * ROWS + r) * D + sub * V + e] = acc[r][e];
    }
    __syncthreads();
    for (int idx = int(threadIdx.x); idx < ROWS * D; idx += kThreads) {
      const int r = idx / D, d = idx % D;
      if (r >= rows) break;
      float mx = neg_inf<float>();
      for (int g = 0; g < G; ++g) mx = fmaxf(mx, s_m[g][r]);
      float sum = 0.f, out = 0.f;
      if (mx != neg_inf<float>()) {
        for (int g = 0; g < G; ++g) {
          const float w = exp2f(s_m[g][r] - mx);
          sum = fmaf(s_l[g][r], w, sum);
          out = fmaf(s_acc[(g * ROWS + r) * D + d], w, out);
        }
      }
      emit(r, d, sum > 0.f ? out / sum : 0.f, sum > 0.f ? mx + log2f(sum) : neg_inf<float>());
    }
  }
};

// Merges n parts of a row, each a normalised output o_at(c) and its log2-sum-exp lse_at(c):
// LSE = log2 sum_c 2^lse_c, O = sum_c 2^(lse_c - LSE) o_c. Sets o and lse (natural log, as
// the outputs store it): 0 and -inf when no part saw a key.
//
// The parts are read 16 at a time, every read issued before the first is used (indices past
// n - 1 re-read part n - 1, and are not summed), so that a merge of up to 16 parts (from the
// workspace, or from the other blocks of a cluster) waits for one round trip per pass rather
// than one per part; the sums still run over c = 0, 1, 2, ... in order.
template <typename LseAt, typename OAt>
FG_ATTN_DEV void merge_parts(int64_t n, LseAt&& lse_at, OAt&& o_at, float& o, float& lse) {
  constexpr int kChunk = 16;
  float mx = neg_inf<float>();
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    float lv[kChunk];
#pragma unroll
    for (int i = 0; i < kChunk; ++i) lv[i] = lse_at(min64(c0 + i, n - 1));
#pragma unroll
    for (int i = 0; i < kChunk; ++i)
      if (c0 + i < n) mx = fmaxf(mx, lv[i]);
  }
  float sum = 0.f, out = 0.f;
  if (mx != neg_inf<float>()) {
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      float lv[kChunk], ov[kChunk];
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        const int64_t c = min64(c0 + i, n - 1);
        lv[i] = lse_at(c), ov[i] = o_at(c);
      }
#pragma unroll
      for (int i = 0; i < kChunk; ++i)
        if (c0 + i < n) {
          const float w = exp2f(lv[i] - mx);
          sum += w;
          out = fmaf(w, ov[i], out);
        }
    }
  }
  constexpr float kLn2 = 0.6931471805599453f;
  o = sum > 0.f ? out / sum : 0.f;
  lse = sum > 0.f ? (mx + log2f(sum)) * kLn2 : neg_inf<float>();
}

}  // namespace decode
}  // namespace attn
}  // namespace fg
