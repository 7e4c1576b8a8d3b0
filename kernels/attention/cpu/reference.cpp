// The fp64 attention reference (cpu/reference.h): per query row, all scores, their softmax and
// its products with V; the backward from the same probabilities, dQ by rows and dK, dV by key
// rows, each output owned by one task.
#include "kernels/attention/cpu/reference.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/philox.h"

namespace fg {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Row i of head h, batch b of an array with element strides (batch, seq, head).
struct Strided {
  int64_t batch, seq, head;
  int64_t at(int64_t b, int64_t i, int64_t h) const { return b * batch + i * seq + h * head; }
};

double dot(const double* a, const double* b, int64_t n) {
  double s = 0;
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

struct Reference {
  const AttentionParams& p;
  const double *q, *k, *v;
  Strided qs{p.q_batch_stride, p.q_seq_stride, p.q_head_stride};
  Strided ks{p.k_batch_stride, p.k_seq_stride, p.k_head_stride};
  Strided vs{p.v_batch_stride, p.v_seq_stride, p.v_head_stride};
  uint32_t threshold = attention_dropout_threshold(p.dropout_p);
  double keep_scale = attention_dropout_keep_scale(p.dropout_p);

  int64_t kv_head(int64_t h) const { return h / (p.Hq / p.Hkv); }

  // Z_ij / (1 - p): the dropout factor of element (b, h, i, j).
  double dropout(int64_t b, int64_t h, int64_t i, int64_t j) const {
    if (p.dropout_p == 0.0) return 1.0;
    return attention_dropout_keep(p.seed, p.offset, uint32_t(p.batch_index_base + b), uint32_t(h), uint32_t(p.Hq),
                                  uint32_t(i), uint32_t(j), threshold)
               ? keep_scale
               : 0.0;
  }

  double score(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return p.softmax_scale * dot(q + qs.at(b, i, h), k + ks.at(b, j, kv_head(h)), p.D);
  }

  // P_ij for every key j of row i (0 where masked); returns LSE_i (-inf: no key visible).
  double probabilities(int64_t b, int64_t h, int64_t i, std::vector<double>& P) const {
    P.assign(size_t(p.Nk), 0.0);
    double mx = kNegInf;
    for (int64_t j = 0; j < p.Nk; ++j)
      if (attention_allowed(p, h, i, j)) mx = std::max(mx, P[size_t(j)] = score(b, h, i, j));
    if (mx == kNegInf) return kNegInf;
    double sum = 0;
    for (int64_t j = 0; j < p.Nk; ++j)
      if (attention_allowed(p, h, i, j)) sum += (P[size_t(j)] = std::exp(P[size_t(j)] - mx));
    for (double& x : P) x /= sum;
    return mx + std::log(sum);
  }
};

std::vector<AttentionHead> all_heads(const AttentionParams& p, std::vector<AttentionHead> heads,
                                     const char* who) {
  if (heads.empty())
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < p.Hq; ++h) heads.push_back({b, h});
  for (const AttentionHead& x : heads)
    FG_CHECK(x.b >= 0 && x.b < p.B && x.h >= 0 && x.h < p.Hq, who, ": head (b=", x.b, ", h=", x.h,
             ") is outside B=", p.B, ", Hq=", p.Hq);
  return heads;
}

void check(const AttentionParams& p, const char* who) {
  FG_CHECK(p.B > 0 && p.Nq > 0 && p.Nk > 0 && p.Hq > 0 && p.Hkv > 0 && p.D > 0 &&
               p.Hq % p.Hkv == 0,
           who, ": sizes must be positive and Hq a multiple of Hkv, got B=", p.B, " Nq=", p.Nq,
           " Nk=", p.Nk, " Hq=", p.Hq, " Hkv=", p.Hkv, " D=", p.D);
  FG_CHECK(p.dropout_p >= 0.0 && p.dropout_p < 1.0, who, ": dropout probability p=", p.dropout_p,
           " must satisfy 0 <= p < 1");
}

}  // namespace

void attention_reference_forward(const AttentionParams& p, const double* q, const double* k,
                                 const double* v, double* o, double* lse,
                                 const std::vector<AttentionHead>& heads_in) {
  const char* who = "attention_reference_forward";
  check(p, who);
  const std::vector<AttentionHead> heads = all_heads(p, heads_in, who);
  const Reference ref{p, q, k, v};
  const Strided os{p.o_batch_stride, p.o_seq_stride, p.o_head_stride};
  const int64_t D = p.D;
  parallel_for(int64_t(heads.size()) * p.Nq, p.Nk * D * 3, [&](int64_t r0, int64_t r1) {
    std::vector<double> P;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = heads[size_t(r / p.Nq)].b, h = heads[size_t(r / p.Nq)].h, i = r % p.Nq;
      double* orow = o + os.at(b, i, h);
      for (int64_t d = 0; d < D; ++d) orow[d] = 0;
      lse[(b * p.Hq + h) * p.Nq + i] = ref.probabilities(b, h, i, P);
      for (int64_t j = 0; j < p.Nk; ++j) {
        const double w = P[size_t(j)] * ref.dropout(b, h, i, j);
        if (w == 0.0) continue;
        const double* vrow = v + ref.vs.at(b, j, ref.kv_head(h));
        for (int64_t d = 0; d < D; ++d) orow[d] += w * vrow[d];
      }
    }
  });
}

void attention_reference_backward(const AttentionParams& p, const double* q, const double* k,
                                  const double* v, const double* dO, double* dq, double* dk,
                                  double* dv, const std::vector<AttentionHead>& heads_in,
                                  const double* o_stored) {
  const char* who = "attention_reference_backward";
  check(p, who);
  const std::vector<AttentionHead> heads = all_heads(p, heads_in, who);
  const Reference ref{p, q, k, v};
  const Strided dos{p.do_batch_stride, p.do_seq_stride, p.do_head_stride};
  const Strided os{p.o_batch_stride, p.o_seq_stride, p.o_head_stride};
  const Strided dqs{p.dq_batch_stride, p.dq_seq_stride, p.dq_head_stride};
  const Strided dks{p.dk_batch_stride, p.dk_seq_stride, p.dk_head_stride};
  const Strided dvs{p.dv_batch_stride, p.dv_seq_stride, p.dv_head_stride};
  const int64_t D = p.D, n = int64_t(heads.size());

  // Query rows: LSE_i, D_i = sum_j P_ij dP_ij Z_ij (or rowsum(dO_i * o_stored_i)) and
  // dQ_i = scale sum_j dS_ij K_j, with dS_ij = P_ij (dP_ij Z_ij - D_i).
  std::vector<double> lse(size_t(n * p.Nq)), Di(size_t(n * p.Nq));
  parallel_for(n * p.Nq, p.Nk * D * 3, [&](int64_t r0, int64_t r1) {
    std::vector<double> P, dP(size_t(p.Nk));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = heads[size_t(r / p.Nq)].b, h = heads[size_t(r / p.Nq)].h, i = r % p.Nq;
      const int64_t hk = ref.kv_head(h);
      lse[size_t(r)] = ref.probabilities(b, h, i, P);
      double di = 0;
      for (int64_t j = 0; j < p.Nk; ++j) {
        const double* vrow = v + ref.vs.at(b, j, hk);
        dP[size_t(j)] = P[size_t(j)] == 0.0
                            ? 0.0
                            : ref.dropout(b, h, i, j) * dot(dO + dos.at(b, i, h), vrow, D);
        di += P[size_t(j)] * dP[size_t(j)];
      }
      if (o_stored) di = dot(dO + dos.at(b, i, h), o_stored + os.at(b, i, h), D);
      Di[size_t(r)] = di;
      double* dqrow = dq + dqs.at(b, i, h);
      for (int64_t d = 0; d < D; ++d) dqrow[d] = 0;
      for (int64_t j = 0; j < p.Nk; ++j) {
        const double ds = P[size_t(j)] * (dP[size_t(j)] - di);
        if (ds == 0.0) continue;
        const double* krow = k + ref.ks.at(b, j, hk);
        for (int64_t d = 0; d < D; ++d) dqrow[d] += p.softmax_scale * ds * krow[d];
      }
    }
  });

  // Key rows of each (batch, kv head) that a listed head uses: dK_j = scale sum_i dS_ij Q_i and
  // dV_j = sum_i P_ij Z_ij dO_i over the listed query heads of the group.
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> groups;  // -> indices into heads
  for (int64_t x = 0; x < n; ++x)
    groups[{heads[size_t(x)].b, ref.kv_head(heads[size_t(x)].h)}].push_back(x);
  for (const auto& group : groups) {
    const int64_t b = group.first.first, hk = group.first.second;
    const std::vector<int64_t>& members = group.second;
    parallel_for(p.Nk, int64_t(members.size()) * p.Nq * D * 4, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        double* dkrow = dk + dks.at(b, j, hk);
        double* dvrow = dv + dvs.at(b, j, hk);
        for (int64_t d = 0; d < D; ++d) dkrow[d] = dvrow[d] = 0;
        for (int64_t x : members) {
          const int64_t h = heads[size_t(x)].h;
          for (int64_t i = 0; i < p.Nq; ++i) {
            if (!attention_allowed(p, h, i, j)) continue;
            const double pij = std::exp(ref.score(b, h, i, j) - lse[size_t(x * p.Nq + i)]);
            const double z = ref.dropout(b, h, i, j);
            const double* dorow = dO + dos.at(b, i, h);
            const double dpij = z * dot(dorow, v + ref.vs.at(b, j, hk), D);
            const double ds = pij * (dpij - Di[size_t(x * p.Nq + i)]);
            const double* qrow = q + ref.qs.at(b, i, h);
            for (int64_t d = 0; d < D; ++d) {
              dkrow[d] += p.softmax_scale * ds * qrow[d];
              dvrow[d] += pij * z * dorow[d];
            }
          }
        }
      }
    });
  }
}

}  // namespace fg
