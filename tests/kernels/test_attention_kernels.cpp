// Tests of the raw-pointer attention kernels (kernels/attention/).
//
// The CPU flash forward and backward are compared with the fp64 reference of the library
// (kernels/attention/cpu/reference.h), which applies the very same masking rule
// (attention_allowed) and dropout mask (attention_dropout_keep); the reference itself is checked
// on cases with a known answer. CUDA tests (tag [cuda], only when built with CUDA) run every
// kernel of the dispatch tables that can compute a case, by name, against the same reference
// and the CPU flash path, and check that deterministic mode is bit-reproducible.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/attention/attention.h"
#include "core/philox.h"
#include "core/error.h"

#ifdef FLASHGRAD_WITH_CUDA
#include "core/cuda_check.h"
#endif

using namespace fg;

namespace {

template <typename T> double to_d(T x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return double(x);
  else return double(float(x));
}
template <typename T> T from_d(double x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) return T(x);
  else return T(float(x));
}
template <typename T> using LseT = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T> double tolerance() {
  if constexpr (std::is_same_v<T, double>) return 1e-12;
  else if constexpr (std::is_same_v<T, float>) return 1e-5;
  else return 1e-2;
}

// Relative L2 error of a against the reference r (entries where r is -inf must match exactly).
template <typename T>
double rel_l2(const std::vector<T>& a, const std::vector<double>& r) {
  REQUIRE(a.size() == r.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = to_d(a[i]);
    if (std::isinf(r[i])) {
      if (x != r[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (!std::isfinite(x)) return std::numeric_limits<double>::infinity();
    num += (x - r[i]) * (x - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

struct Cfg {
  int64_t B = 2, Nq = 37, Nk = 53, Hq = 2, Hkv = 2, D = 32;
  bool causal = false;
  double p = 0.0;
  std::vector<uint8_t> mask;  // empty: no block mask
  int64_t mask_heads = 1;
  uint64_t seed = 1234, offset = 7;
  bool deterministic = false;
};

AttentionParams make_params(const Cfg& c) {
  AttentionParams p;
  p.B = c.B, p.Nq = c.Nq, p.Nk = c.Nk, p.Hq = c.Hq, p.Hkv = c.Hkv, p.D = c.D;
  set_contiguous_strides(p);
  p.softmax_scale = 1.0 / std::sqrt(double(c.D));
  p.causal = c.causal;
  p.dropout_p = c.p;
  p.seed = c.seed;
  p.offset = c.offset;
  p.block_mask = c.mask.empty() ? nullptr : c.mask.data();
  p.block_mask_heads = c.mask_heads;
  p.deterministic = c.deterministic;
  return p;
}

// Host data of one problem: inputs in the storage type and the double reference.
template <typename T> struct Problem {
  Cfg cfg;
  AttentionParams p;  // host pointers
  std::vector<T> q, k, v, dO, o, dq, dk, dv;
  std::vector<LseT<T>> lse;
  std::vector<double> ro, rlse, rdq, rdk, rdv;  // reference

  explicit Problem(const Cfg& c) : cfg(c) {
    p = make_params(cfg);
    p.dtype = dtype_of<T>::value;
    std::mt19937_64 gen(cfg.seed * 7919 + uint64_t(c.D));
    std::normal_distribution<double> nd(0.0, 1.0);
    auto fill = [&](std::vector<T>& x, size_t n, double sigma) {
      x.resize(n);
      for (auto& e : x) e = from_d<T>(sigma * nd(gen));
    };
    const size_t nq = size_t(c.B * c.Nq * c.Hq * c.D), nk = size_t(c.B * c.Nk * c.Hkv * c.D);
    fill(q, nq, 1.0);
    fill(k, nk, 1.0);
    fill(v, nk, 1.0);
    fill(dO, nq, 1.0);
    // Outputs are poisoned so that an unwritten element shows up as NaN.
    const T nan = from_d<T>(std::numeric_limits<double>::quiet_NaN());
    o.assign(nq, nan);
    dq.assign(nq, nan);
    dk.assign(nk, nan);
    dv.assign(nk, nan);
    lse.assign(size_t(c.B * c.Hq * c.Nq), LseT<T>(std::numeric_limits<double>::quiet_NaN()));
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.do_ = dO.data();
    p.o = o.data(), p.lse = lse.data(), p.dq = dq.data(), p.dk = dk.data(), p.dv = dv.data();
    reference();
  }

  // The fp64 reference on the (rounded) inputs.
  void reference() {
    auto wide = [](const std::vector<T>& x) {
      std::vector<double> d(x.size());
      for (size_t e = 0; e < x.size(); ++e) d[e] = to_d(x[e]);
      return d;
    };
    const std::vector<double> qd = wide(q), kd = wide(k), vd = wide(v), dod = wide(dO);
    ro.assign(q.size(), 0), rdq.assign(q.size(), 0), rdk.assign(k.size(), 0);
    rdv.assign(k.size(), 0), rlse.assign(lse.size(), 0);
    attention_reference_forward(p, qd.data(), kd.data(), vd.data(), ro.data(), rlse.data());
    attention_reference_backward(p, qd.data(), kd.data(), vd.data(), dod.data(), rdq.data(),
                                 rdk.data(), rdv.data());
  }

  void check(const char* what, double tol) const {
    INFO(what << " dtype=" << dtype_name(p.dtype) << " B=" << cfg.B << " Nq=" << cfg.Nq
              << " Nk=" << cfg.Nk << " Hq=" << cfg.Hq << " Hkv=" << cfg.Hkv << " D=" << cfg.D
              << " causal=" << cfg.causal << " p=" << cfg.p << " mask=" << !cfg.mask.empty());
    if (std::getenv("FG_ATTENTION_VERBOSE"))  // print the errors, e.g. to see the margins
      std::printf("%s %s Nq=%lld Nk=%lld D=%lld causal=%d p=%.2f: o %.2e lse %.2e dq %.2e "
                  "dk %.2e dv %.2e\n", what, dtype_name(p.dtype), (long long)cfg.Nq,
                  (long long)cfg.Nk, (long long)cfg.D, int(cfg.causal), cfg.p, rel_l2(o, ro),
                  rel_l2(lse, rlse), rel_l2(dq, rdq), rel_l2(dk, rdk), rel_l2(dv, rdv));
    CHECK(rel_l2(o, ro) < tol);
    CHECK(rel_l2(lse, rlse) < std::max(tol, 1e-6));  // LSE is fp32 unless f64
    CHECK(rel_l2(dq, rdq) < tol);
    CHECK(rel_l2(dk, rdk) < tol);
    CHECK(rel_l2(dv, rdv) < tol);
  }
};

template <typename T> void check_cpu(const Cfg& c) {
  Problem<T> pr(c);
  flash_attention_forward_cpu(pr.p);
  flash_attention_backward_cpu(pr.p);
  pr.check("cpu flash vs naive", tolerance<T>());
}

template <typename F> void for_all_dtypes(F f) {
  f(float{});
  f(double{});
  f(bfloat16{});
  f(float16{});
}

}  // namespace

TEST_CASE("attention cpu: odd sizes, all dtypes", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Cfg c;
    check_cpu<T>(c);
    c.Nq = 130, c.Nk = 65, c.B = 1;
    check_cpu<T>(c);
    c.Nq = 1, c.Nk = 1;
    check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: causal bottom-right, Nq < Nk and Nq > Nk", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Cfg c;
    c.causal = true;
    c.Nq = 37, c.Nk = 150;
    check_cpu<T>(c);
    c.Nq = 150, c.Nk = 37;
    check_cpu<T>(c);
    c.Nq = c.Nk = 129;
    check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: fully masked rows give O = 0, LSE = -inf, zero dQ", "[attention]") {
  Cfg c;
  c.causal = true;
  c.Nq = 100, c.Nk = 30;  // rows i < 70 see no key
  Problem<float> pr(c);
  flash_attention_forward_cpu(pr.p);
  flash_attention_backward_cpu(pr.p);
  pr.check("fully masked rows", 1e-5);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < 70; ++i) {
        CHECK(pr.lse[size_t((b * c.Hq + h) * c.Nq + i)] == -std::numeric_limits<float>::infinity());
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t e = size_t(((b * c.Nq + i) * c.Hq + h) * c.D + d);
          CHECK(pr.o[e] == 0.0f);
          CHECK(pr.dq[e] == 0.0f);
        }
      }
}

TEST_CASE("attention cpu: dropout 0.1 and 0.5", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Cfg c;
    c.p = 0.1;
    check_cpu<T>(c);
    c.p = 0.5;
    c.causal = true;
    c.Nq = 70, c.Nk = 90;
    check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: GQA and MQA", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Cfg c;
    c.Hq = 4, c.Hkv = 2;
    check_cpu<T>(c);
    c.Hkv = 1;
    c.causal = true;
    c.p = 0.1;
    check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: head dims 32, 64, 128 and odd ones", "[attention]") {
  for (int64_t D : {32, 64, 128, 40, 17}) {
    Cfg c;
    c.D = D;
    c.causal = D == 64;
    c.p = D == 128 ? 0.1 : 0.0;
    check_cpu<float>(c);
    check_cpu<double>(c);
    check_cpu<bfloat16>(c);
  }
}

TEST_CASE("attention cpu: block masks from both builders", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Cfg c;
    c.B = 1, c.Nq = 200, c.Nk = 260;
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 70, true);
    c.causal = true;
    check_cpu<T>(c);
    c.mask = global_local_block_mask(c.Nq, c.Nk, 10, 64);
    c.causal = false;
    c.p = 0.1;
    check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: per-head block mask with empty rows and never-read key tiles",
          "[attention]") {
  Cfg c;
  c.B = 1, c.Nq = 150, c.Nk = 200, c.Hq = 2, c.Hkv = 1;
  const int64_t nbq = 3, nbk = 4;
  c.mask.assign(size_t(2 * nbq * nbk), 1);
  c.mask_heads = 2;
  for (int64_t bj = 0; bj < nbk; ++bj)
    c.mask[size_t((0 * nbq + 1) * nbk + bj)] = 0;  // head 0, rows 64..127
  for (int64_t bi = 0; bi < nbq; ++bi)
    for (int64_t h = 0; h < 2; ++h) c.mask[size_t((h * nbq + bi) * nbk + 2)] = 0;  // keys 128..191
  Problem<float> pr(c);
  // Keys 128..191 are hidden from every query: poison them; they must never be read.
  for (int64_t j = 128; j < 192; ++j)
    for (int64_t d = 0; d < c.D; ++d) {
      pr.k[size_t(j * c.D + d)] = std::numeric_limits<float>::quiet_NaN();
      pr.v[size_t(j * c.D + d)] = std::numeric_limits<float>::quiet_NaN();
    }
  flash_attention_forward_cpu(pr.p);
  flash_attention_backward_cpu(pr.p);
  // The reference multiplies NaN by zero for the hidden keys, so compare only what it can say.
  for (int64_t i = 64; i < 128; ++i) {
    CHECK(pr.lse[size_t(i)] == -std::numeric_limits<float>::infinity());
    for (int64_t d = 0; d < c.D; ++d) CHECK(pr.o[size_t((i * 2 + 0) * c.D + d)] == 0.0f);
  }
  for (size_t e = 0; e < pr.o.size(); ++e) CHECK(std::isfinite(pr.o[e]));
  for (size_t e = 0; e < pr.dq.size(); ++e) CHECK(std::isfinite(pr.dq[e]));
  for (int64_t j = 128; j < 192; ++j)
    for (int64_t d = 0; d < c.D; ++d) {
      CHECK(pr.dk[size_t(j * c.D + d)] == 0.0f);
      CHECK(pr.dv[size_t(j * c.D + d)] == 0.0f);
    }
  // With finite keys everywhere, the same mask must match the reference.
  Problem<float> clean(c);
  flash_attention_forward_cpu(clean.p);
  flash_attention_backward_cpu(clean.p);
  clean.check("per-head mask", 1e-5);
}

TEST_CASE("attention cpu: fused QKV layout through strides", "[attention]") {
  Cfg c;
  c.Nq = c.Nk = 45;
  c.Hq = c.Hkv = 3;
  c.causal = true;
  c.p = 0.1;
  Problem<float> pr(c);
  flash_attention_forward_cpu(pr.p);
  flash_attention_backward_cpu(pr.p);
  pr.check("contiguous", 1e-5);

  // The same problem out of one [B, N, 3, H, D] buffer (and gradients into another).
  const int64_t H = c.Hq, D = c.D, N = c.Nq;
  std::vector<float> qkv(size_t(c.B * N * 3 * H * D)), dqkv(qkv.size(), -1.0f);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) {
          const size_t src = size_t(((b * N + n) * H + h) * D + d);
          const size_t dst = size_t((((b * N + n) * 3) * H + h) * D + d);
          qkv[dst] = pr.q[src];
          qkv[dst + size_t(H * D)] = pr.k[src];
          qkv[dst + size_t(2 * H * D)] = pr.v[src];
        }
  std::vector<float> o(pr.o.size()), lse(pr.lse.size());
  AttentionParams f = pr.p;
  f.q = qkv.data(), f.k = qkv.data() + H * D, f.v = qkv.data() + 2 * H * D;
  f.dq = dqkv.data(), f.dk = dqkv.data() + H * D, f.dv = dqkv.data() + 2 * H * D;
  f.o = o.data(), f.lse = lse.data();
  f.do_ = pr.dO.data();
  for (int64_t* s : {&f.q_batch_stride, &f.k_batch_stride, &f.v_batch_stride, &f.dq_batch_stride,
                     &f.dk_batch_stride, &f.dv_batch_stride})
    *s = N * 3 * H * D;
  for (int64_t* s : {&f.q_seq_stride, &f.k_seq_stride, &f.v_seq_stride, &f.dq_seq_stride,
                     &f.dk_seq_stride, &f.dv_seq_stride})
    *s = 3 * H * D;
  flash_attention_forward_cpu(f);
  flash_attention_backward_cpu(f);
  CHECK(std::memcmp(o.data(), pr.o.data(), o.size() * 4) == 0);
  CHECK(std::memcmp(lse.data(), pr.lse.data(), lse.size() * 4) == 0);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) {
          const size_t src = size_t(((b * N + n) * H + h) * D + d);
          const size_t dst = size_t((((b * N + n) * 3) * H + h) * D + d);
          CHECK(dqkv[dst] == pr.dq[src]);
          CHECK(dqkv[dst + size_t(H * D)] == pr.dk[src]);
          CHECK(dqkv[dst + size_t(2 * H * D)] == pr.dv[src]);
        }
}

TEST_CASE("attention dropout keep fraction is 1 - p within 5 sigma", "[attention]") {
  for (double p : {0.1, 0.5, 0.9}) {
    const uint32_t thr = dropout_threshold(p);
    const int64_t n = 256 * 256 * 4;
    int64_t kept = 0;
    for (uint32_t h = 0; h < 4; ++h)
      for (uint32_t i = 0; i < 256; ++i)
        for (uint32_t j = 0; j < 256; ++j)
          kept += attention_dropout_keep(42, 3, 1, h, 4, i, j, thr);
    const double sigma = std::sqrt(double(n) * p * (1 - p));
    INFO("p=" << p << " kept=" << kept << " expected=" << double(n) * (1 - p));
    CHECK(std::abs(double(kept) - double(n) * (1 - p)) < 5 * sigma);
  }
  CHECK(dropout_threshold(0.0) == 0u);
}

TEST_CASE("attention block-mask builders", "[attention]") {
  // Causal sliding window, Nq = Nk = 256, window 64: tile (bi, bj) is kept iff bj in {bi-1, bi}.
  auto m = sliding_window_block_mask(256, 256, 64, true);
  REQUIRE(m.size() == 16);
  for (int bi = 0; bi < 4; ++bi)
    for (int bj = 0; bj < 4; ++bj)
      CHECK(m[size_t(bi * 4 + bj)] == ((bj == bi || bj == bi - 1) ? 1 : 0));
  // Non-causal window 0 keeps only the diagonal tiles.
  m = sliding_window_block_mask(256, 256, 0, false);
  for (int bi = 0; bi < 4; ++bi)
    for (int bj = 0; bj < 4; ++bj) CHECK(m[size_t(bi * 4 + bj)] == (bi == bj ? 1 : 0));
  // Odd sizes: ceil division.
  CHECK(sliding_window_block_mask(65, 129, 10, false).size() == 2 * 3);
  // Global + local: first key column and first query row of tiles are all kept.
  m = global_local_block_mask(320, 320, 5, 0);
  REQUIRE(m.size() == 25);
  for (int bi = 0; bi < 5; ++bi)
    for (int bj = 0; bj < 5; ++bj)
      CHECK(m[size_t(bi * 5 + bj)] == ((bi == bj || bi == 0 || bj == 0) ? 1 : 0));
}

TEST_CASE("attention tile visibility", "[attention]") {
  Cfg c;
  c.Nq = 128, c.Nk = 128, c.causal = true;
  AttentionParams p = make_params(c);
  CHECK(tile_visibility(p, 0, 0, 64, 64, 128) == TileVisibility::empty);
  CHECK(tile_visibility(p, 0, 0, 64, 0, 64) == TileVisibility::partial);
  CHECK(tile_visibility(p, 0, 64, 128, 0, 64) == TileVisibility::full);
  p.Nk = 200;  // shift 72: row 0 sees keys 0..72
  CHECK(tile_visibility(p, 0, 0, 64, 64, 128) == TileVisibility::partial);
  CHECK(tile_visibility(p, 0, 0, 64, 136, 200) == TileVisibility::empty);
}

TEST_CASE("attention reference: one key gives O = Z V, LSE = the score and zero dQ, dK",
          "[attention]") {
  // With a single key, P = 1: O_i = Z_i0 / (1-p) V_0, LSE_i = scale <Q_i, K_0>,
  // dV_0 = sum_i Z_i0 / (1-p) dO_i, and dS = P (dP Z - D) = 0.
  Cfg c;
  c.B = 1, c.Nq = 5, c.Nk = 1, c.Hq = c.Hkv = 1, c.D = 3, c.p = 0.5;
  AttentionParams p = make_params(c);
  const std::vector<double> q = {1, 2, 3, -1, 0, 2, 0.5, 0.5, 0.5, 2, -2, 1, 0, 0, 1};
  const std::vector<double> k = {0.5, -1, 2}, v = {3, -4, 5}, dO = {1, 1, 1, 2, 0, -1, 0, 1, 0,
                                                                   3, 3, 3, -1, 2, -3};
  std::vector<double> o(15), lse(5), dq(15), dk(3), dv(3);
  attention_reference_forward(p, q.data(), k.data(), v.data(), o.data(), lse.data());
  attention_reference_backward(p, q.data(), k.data(), v.data(), dO.data(), dq.data(), dk.data(),
                               dv.data());
  const uint32_t thr = dropout_threshold(c.p);
  std::vector<double> dv_expected(3, 0.0);
  for (int64_t i = 0; i < 5; ++i) {
    const double z =
        attention_dropout_keep(c.seed, c.offset, 0, 0, 1, uint32_t(i), 0, thr) ? 2.0 : 0.0;
    double s = 0;
    for (int d = 0; d < 3; ++d) s += q[size_t(i * 3 + d)] * k[size_t(d)];
    CHECK(lse[size_t(i)] == Approx(s * p.softmax_scale).epsilon(1e-14));
    for (int d = 0; d < 3; ++d) {
      CHECK(o[size_t(i * 3 + d)] == Approx(z * v[size_t(d)]).epsilon(1e-14));
      CHECK(std::abs(dq[size_t(i * 3 + d)]) < 1e-14);
      dv_expected[size_t(d)] += z * dO[size_t(i * 3 + d)];
    }
  }
  for (int d = 0; d < 3; ++d) {
    CHECK(std::abs(dk[size_t(d)]) < 1e-14);
    CHECK(dv[size_t(d)] == Approx(dv_expected[size_t(d)]).epsilon(1e-14));
  }
}

TEST_CASE("attention reference: a subset of heads gives exactly those heads' rows", "[attention]") {
  Cfg c;
  c.B = 2, c.Nq = 40, c.Nk = 70, c.Hq = 4, c.Hkv = 2, c.causal = true, c.p = 0.1;
  Problem<double> full(c);  // its reference covers every head
  // Both query heads of kv head 1 of batch 1: their O, LSE, dQ rows and the dK, dV rows of
  // (b = 1, kv head 1) are written, and nothing else.
  const std::vector<AttentionHead> heads = {{1, 2}, {1, 3}};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> o(full.ro.size(), nan), lse(full.rlse.size(), nan), dq(full.rdq.size(), nan);
  std::vector<double> dk(full.rdk.size(), nan), dv(full.rdv.size(), nan);
  attention_reference_forward(full.p, full.q.data(), full.k.data(), full.v.data(), o.data(),
                              lse.data(), heads);
  attention_reference_backward(full.p, full.q.data(), full.k.data(), full.v.data(),
                               full.dO.data(), dq.data(), dk.data(), dv.data(), heads);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t i = 0; i < c.Nq; ++i)
      for (int64_t h = 0; h < c.Hq; ++h) {
        const bool listed = b == 1 && h >= 2;
        const size_t r = size_t((b * c.Hq + h) * c.Nq + i);
        CHECK((listed ? lse[r] == full.rlse[r] : std::isnan(lse[r])));
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t e = size_t(((b * c.Nq + i) * c.Hq + h) * c.D + d);
          CHECK((listed ? o[e] == full.ro[e] && dq[e] == full.rdq[e]
                        : std::isnan(o[e]) && std::isnan(dq[e])));
        }
      }
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.Nk; ++j)
      for (int64_t hk = 0; hk < c.Hkv; ++hk)
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t e = size_t(((b * c.Nk + j) * c.Hkv + hk) * c.D + d);
          if (b == 1 && hk == 1) {
            CHECK(dk[e] == Approx(full.rdk[e]).epsilon(1e-13).margin(1e-15));
            CHECK(dv[e] == Approx(full.rdv[e]).epsilon(1e-13).margin(1e-15));
          } else {
            CHECK((std::isnan(dk[e]) && std::isnan(dv[e])));
          }
        }
}

TEST_CASE("attention argument checks say what is wrong", "[attention]") {
  Problem<float> pr(Cfg{});
  AttentionParams p = pr.p;
  p.Hkv = 3;
  p.Hq = 4;
  CHECK_THROWS_WITH(check_attention_params(p),
                    Catch::Contains("multiple of the number of kv heads"));
  p = pr.p;
  p.dropout_p = 1.0;
  CHECK_THROWS_WITH(flash_attention_forward_cpu(p), Catch::Contains("dropout probability"));
  p = pr.p;
  p.D = 40;
  CHECK_NOTHROW(check_attention_params(p));
  CHECK_THROWS_WITH(check_attention_params(p, false, true), Catch::Contains("head dim D=40"));
  p = pr.p;
  p.k = nullptr;
  CHECK_THROWS_AS(flash_attention_forward_cpu(p), fg::Error);
  p = pr.p;
  p.dq = nullptr;
  CHECK_NOTHROW(check_attention_params(p));
  CHECK_THROWS_WITH(flash_attention_backward_cpu(p), Catch::Contains("dq"));
  p = pr.p;
  p.Nq = 0;
  CHECK_THROWS_WITH(check_attention_params(p), Catch::Contains("positive"));
  p = pr.p;
  p.block_mask = reinterpret_cast<const uint8_t*>(&p);
  p.block_mask_heads = 3;
  CHECK_THROWS_WITH(check_attention_params(p), Catch::Contains("block_mask_heads"));
  p = pr.p;
  p.dtype = DType::i32;
  CHECK_THROWS_WITH(check_attention_params(p), Catch::Contains("not supported"));
  p = pr.p;
  p.workspace = nullptr;
  CHECK_THROWS_WITH(check_attention_params(p, true, true), Catch::Contains("workspace"));
  p.deterministic = true;
  const size_t det = flash_attention_backward_workspace_bytes(p);
  p.deterministic = false;
  CHECK(flash_attention_backward_workspace_bytes(p) > det);
}

// ---------------------------------------------------------------------------------------------
// CUDA

#ifdef FLASHGRAD_WITH_CUDA
namespace {

template <typename T> struct DeviceBuf {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuf(size_t count, bool poison = true) : n(count) {
    FG_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)));
    if (poison) FG_CUDA_CHECK(cudaMemset(ptr, 0xFF, n * sizeof(T)));  // NaN in every float type
  }
  explicit DeviceBuf(const std::vector<T>& h) : DeviceBuf(h.size(), false) {
    FG_CUDA_CHECK(cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuf() { cudaFree(ptr); }
  DeviceBuf(const DeviceBuf&) = delete;
  DeviceBuf& operator=(const DeviceBuf&) = delete;
  std::vector<T> host() const {
    std::vector<T> h(n);
    FG_CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <typename T> struct CudaRun {
  std::vector<T> o, dq, dk, dv;
  std::vector<LseT<T>> lse;
};

// Problem `pr` on the GPU: its inputs uploaded once, outputs poisoned before every run.
template <typename T> struct DeviceProblem {
  DeviceBuf<T> q, k, v, dO, o, dq, dk, dv;
  DeviceBuf<LseT<T>> lse;
  DeviceBuf<uint8_t> mask;
  AttentionParams p;

  explicit DeviceProblem(const Problem<T>& pr)
      : q(pr.q), k(pr.k), v(pr.v), dO(pr.dO), o(pr.o.size()), dq(pr.dq.size()), dk(pr.dk.size()),
        dv(pr.dv.size()), lse(pr.lse.size()),
        mask(pr.cfg.mask.empty() ? std::vector<uint8_t>{0} : pr.cfg.mask) {
    p = pr.p;
    p.q = q.ptr, p.k = k.ptr, p.v = v.ptr, p.do_ = dO.ptr;
    p.o = o.ptr, p.lse = lse.ptr, p.dq = dq.ptr, p.dk = dk.ptr, p.dv = dv.ptr;
    p.block_mask = pr.cfg.mask.empty() ? nullptr : mask.ptr;
  }

  // Forward with kernel `fwd`, then backward with kernel `bwd` (names of the dispatch tables).
  CudaRun<T> run(const char* fwd, const char* bwd, bool deterministic) {
    for (auto* buf : {&o, &dq, &dk, &dv})
      FG_CUDA_CHECK(cudaMemset(buf->ptr, 0xFF, buf->n * sizeof(T)));  // NaN
    FG_CUDA_CHECK(cudaMemset(lse.ptr, 0xFF, lse.n * sizeof(LseT<T>)));
    AttentionParams pb = p;
    pb.deterministic = deterministic;
    DeviceBuf<uint8_t> ws(flash_attention_backward_workspace_bytes(pb));
    pb.workspace = ws.ptr;
    flash_attention_forward_cuda_with(fwd, pb);
    flash_attention_backward_cuda_with(bwd, pb);
    FG_CUDA_CHECK(cudaDeviceSynchronize());
    return CudaRun<T>{o.host(), dq.host(), dk.host(), dv.host(), lse.host()};
  }
  CudaRun<T> run_default(bool deterministic) {
    return run(flash_attention_forward_kernel(p), flash_attention_backward_kernel(p),
               deterministic);
  }
};

// Every kernel of the two tables that can compute the case, by name: each forward with the
// default backward, each backward (atomic and deterministic dQ) after the default forward.
template <typename T> void check_cuda(const Cfg& c) {
  Problem<T> pr(c);
  flash_attention_forward_cpu(pr.p);
  flash_attention_backward_cpu(pr.p);
  DeviceProblem<T> dev(pr);
  const char* fwd_default = flash_attention_forward_kernel(dev.p);
  const char* bwd_default = flash_attention_backward_kernel(dev.p);
  auto check = [&](const char* fwd, const char* bwd, bool det) {
    const CudaRun<T> r = dev.run(fwd, bwd, det);
    INFO("cuda forward " << fwd << ", backward " << bwd << " deterministic=" << det
                         << " dtype=" << dtype_name(pr.p.dtype) << " Nq=" << c.Nq << " Nk=" << c.Nk
                         << " Hq=" << c.Hq << " Hkv=" << c.Hkv << " D=" << c.D
                         << " causal=" << c.causal << " p=" << c.p << " mask=" << !c.mask.empty());
    const double tol = tolerance<T>();
    CHECK(rel_l2(r.o, pr.ro) < tol);
    CHECK(rel_l2(r.lse, pr.rlse) < std::max(tol, 1e-6));
    CHECK(rel_l2(r.dq, pr.rdq) < tol);
    CHECK(rel_l2(r.dk, pr.rdk) < tol);
    CHECK(rel_l2(r.dv, pr.rdv) < tol);
    // And against the CPU flash path (same dropout mask, same algorithm).
    std::vector<double> cpu_o(pr.o.size()), cpu_dq(pr.dq.size());
    for (size_t e = 0; e < pr.o.size(); ++e) cpu_o[e] = to_d(pr.o[e]);
    for (size_t e = 0; e < pr.dq.size(); ++e) cpu_dq[e] = to_d(pr.dq[e]);
    CHECK(rel_l2(r.o, cpu_o) < 2 * tol);
    CHECK(rel_l2(r.dq, cpu_dq) < 2 * tol);
  };
  for (const AttentionKernel& f : flash_attention_forward_kernels())
    if (f.usable(dev.p)) check(f.name, bwd_default, false);
  for (const AttentionKernel& b : flash_attention_backward_kernels())
    if (b.usable(dev.p))
      for (bool det : {false, true}) check(fwd_default, b.name, det);
}

}  // namespace

TEST_CASE("attention cuda matches the reference", "[cuda][attention]") {
  if (!have_gpu()) {
    WARN("no CUDA device; skipped");
    return;
  }
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    for (int64_t D : {32, 64, 128}) {
      Cfg c;
      c.D = D;
      check_cuda<T>(c);  // odd sizes
      c.causal = true, c.Nq = 37, c.Nk = 150;
      check_cuda<T>(c);
      c.Nq = 150, c.Nk = 37;  // fully masked rows
      check_cuda<T>(c);
      c.Nq = c.Nk = 130, c.p = 0.1, c.Hq = 4, c.Hkv = 2;
      check_cuda<T>(c);
      c.p = 0.5, c.Hkv = 1, c.causal = false;
      check_cuda<T>(c);
    }
  });
}

TEST_CASE("attention cuda block masks", "[cuda][attention][racecheck]") {
  if (!have_gpu()) return;
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Cfg c;
    c.B = 1, c.Nq = 200, c.Nk = 260, c.D = 64;
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 70, true);
    c.causal = true;
    check_cuda<T>(c);
    c.mask = global_local_block_mask(c.Nq, c.Nk, 10, 64);
    c.causal = false, c.p = 0.1, c.Hq = 4, c.Hkv = 2;
    check_cuda<T>(c);
  });
}

TEST_CASE("attention cuda deterministic mode is bit-reproducible", "[cuda][attention][racecheck]") {
  if (!have_gpu()) return;
  Cfg c;
  c.Nq = 300, c.Nk = 333, c.Hq = 4, c.Hkv = 2, c.D = 64, c.causal = true, c.p = 0.1;
  Problem<float> pr(c);
  DeviceProblem<float> dev(pr);
  CudaRun<float> a = dev.run_default(true), b = dev.run_default(true);
  CHECK(std::memcmp(a.dq.data(), b.dq.data(), a.dq.size() * 4) == 0);
  CHECK(std::memcmp(a.dk.data(), b.dk.data(), a.dk.size() * 4) == 0);
  CHECK(std::memcmp(a.dv.data(), b.dv.data(), a.dv.size() * 4) == 0);
  CHECK(std::memcmp(a.o.data(), b.o.data(), a.o.size() * 4) == 0);
  CHECK(rel_l2(a.dq, pr.rdq) < 1e-5);
}

TEST_CASE("attention cuda rejects unsupported head dims", "[cuda][attention]") {
  Problem<float> pr(Cfg{});
  AttentionParams p = pr.p;
  p.D = 96;
  CHECK_THROWS_WITH(flash_attention_forward_cuda(p), Catch::Contains("head dim D=96"));
}
#endif  // FLASHGRAD_WITH_CUDA
