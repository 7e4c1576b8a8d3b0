// Tests of the raw-pointer attention kernels (kernels/attention/).
//
// The CPU flash forward and backward are compared with the fp64 reference of the library
// (kernels/attention/cpu/reference.h), which applies the very same masking rule
// (attention_allowed) and dropout mask (attention_dropout_keep); the reference itself is checked
// on cases with a known answer. The CUDA tests (tag [cuda], CUDA builds; they fail without a
// usable GPU) run every kernel of the dispatch tables that can compute a case, by name, against
// the same reference, on contiguous and fused-QKV inputs at lengths around the 64-wide tiles,
// and check that every deterministic backward is bit-reproducible (attention_testing.h). Every
// comparison prints a "measured" line with its error and bound.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "kernels/attention/attention.h"
#include "kernels/attention_testing.h"

using namespace fg;
using namespace fg::attention_test;

TEST_CASE("attention cpu: odd sizes, all dtypes", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Case c;
    check_cpu<T>(c);
    c.Nq = 130, c.Nk = 65, c.B = 1;
    check_cpu<T>(c);
    c.Nq = 1, c.Nk = 1;
    check_cpu<T>(c);
  });
}

// The cases of the CPU and CUDA sweeps: query lengths 63, 127, 129 (one short of, at and one past a
// tile) against key lengths on either side, in both layouts, with causal masks that cross the
// tiles' diagonals or leave rows without keys, dropout, GQA and MQA.
std::vector<Case> sweep_cases(int64_t D) {
  std::vector<Case> cases(8);
  for (Case& c : cases) c.D = D;
  cases[0].Nq = 63, cases[0].Nk = 127;
  cases[1].Nq = cases[1].Nk = 129, cases[1].causal = true, cases[1].p = 0.1;
  cases[1].layout = Layout::fused_qkv;
  cases[2].Nq = 127, cases[2].Nk = 63, cases[2].causal = true, cases[2].Hq = 4;  // rows < 64: none
  cases[3].Nq = cases[3].Nk = 127, cases[3].layout = Layout::fused_qkv;
  cases[4].Nq = cases[4].Nk = 129, cases[4].Hq = 4, cases[4].Hkv = 1, cases[4].p = 0.5;
  cases[5].Nq = cases[5].Nk = 63, cases[5].Hq = cases[5].Hkv = 3, cases[5].causal = true;
  cases[5].p = 0.1, cases[5].layout = Layout::fused_qkv;
  cases[6].Nq = 37, cases[6].Nk = 150, cases[6].causal = true, cases[6].B = 1;
  cases[7].Nq = 1, cases[7].Nk = 150, cases[7].causal = true, cases[7].Hq = 4;  // a decode step
  return cases;
}

// The CPU path is one code for every head dim: here 32 and 128 (the other dims below).
TEST_CASE("attention cpu: lengths 63, 127, 129 and fused-QKV inputs (the CUDA sweep's cases)",
          "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    for (int64_t D : {32, 128})
      for (const Case& c : sweep_cases(D)) check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: causal bottom-right, Nq < Nk and Nq > Nk", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Case c;
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
  Case c;
  c.causal = true;
  c.Nq = 100, c.Nk = 30;  // rows i < 70 see no key
  Problem<float> pr(c);
  const Values r = HostRun<float>(pr, c.layout).run();
  check_errors("cpu", DType::f32, c, all_errors(r, pr.ref), cpu_bounds(DType::f32));
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < 70; ++i) {
        CHECK(r.lse[size_t((b * c.Hq + h) * c.Nq + i)] == -std::numeric_limits<double>::infinity());
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t e = size_t(((b * c.Nq + i) * c.Hq + h) * c.D + d);
          CHECK(r.o[e] == 0.0);
          CHECK(r.dq[e] == 0.0);
        }
      }
}

TEST_CASE("attention cpu: dropout 0.1 and 0.5", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Case c;
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
    Case c;
    c.Hq = 4, c.Hkv = 2;
    check_cpu<T>(c);
    c.Hkv = 1;
    c.causal = true;
    c.p = 0.1;
    check_cpu<T>(c);
  });
}

TEST_CASE("attention cpu: head dims 32, 64, 96, 128, 256 and odd ones", "[attention]") {
  for (int64_t D : {32, 64, 96, 128, 256, 40, 17}) {
    Case c;
    c.D = D;
    c.causal = D == 64;
    c.p = D == 128 ? 0.1 : 0.0;
    check_cpu<float>(c);
    check_cpu<double>(c);
    check_cpu<bfloat16>(c);
    check_cpu<float16>(c);
  }
}

TEST_CASE("attention cpu: block masks from both builders", "[attention]") {
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Case c;
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
  Case c;
  c.B = 1, c.Nq = 150, c.Nk = 200, c.Hq = 2, c.Hkv = 1;
  const int64_t nbq = 3, nbk = 4;
  c.mask.assign(size_t(2 * nbq * nbk), 1);
  c.mask_heads = 2;
  for (int64_t bj = 0; bj < nbk; ++bj)
    c.mask[size_t((0 * nbq + 1) * nbk + bj)] = 0;  // head 0, rows 64..127
  for (int64_t bi = 0; bi < nbq; ++bi)
    for (int64_t h = 0; h < 2; ++h) c.mask[size_t((h * nbq + bi) * nbk + 2)] = 0;  // keys 128..191
  Problem<float> pr(c);
  // With finite keys everywhere, the mask must match the reference.
  check_errors("cpu", DType::f32, c, all_errors(HostRun<float>(pr, c.layout).run(), pr.ref),
               cpu_bounds(DType::f32));
  // Keys 128..191 are hidden from every query: poisoned, they must never be read.
  HostRun<float> run(pr, c.layout);
  for (int64_t j = 128; j < 192; ++j)
    for (int64_t d = 0; d < c.D; ++d) {
      run.in[run.pl.k + size_t(j * c.D + d)] = std::numeric_limits<float>::quiet_NaN();
      run.in[run.pl.v + size_t(j * c.D + d)] = std::numeric_limits<float>::quiet_NaN();
    }
  const Values r = run.run();
  for (int64_t i = 64; i < 128; ++i) {
    CHECK(r.lse[size_t(i)] == -std::numeric_limits<double>::infinity());
    for (int64_t d = 0; d < c.D; ++d) CHECK(r.o[size_t((i * 2 + 0) * c.D + d)] == 0.0);
  }
  for (double x : r.o) CHECK(std::isfinite(x));
  for (double x : r.dq) CHECK(std::isfinite(x));
  for (int64_t j = 128; j < 192; ++j)
    for (int64_t d = 0; d < c.D; ++d) {
      CHECK(r.dk[size_t(j * c.D + d)] == 0.0);
      CHECK(r.dv[size_t(j * c.D + d)] == 0.0);
    }
}

TEST_CASE("attention cpu: fused QKV inputs give bit-identical results", "[attention]") {
  Case c;
  c.Nq = c.Nk = 45;
  c.Hq = c.Hkv = 3;
  c.causal = true;
  c.p = 0.1;
  Problem<float> pr(c);
  const Values a = HostRun<float>(pr, Layout::contiguous).run();
  const Values b = HostRun<float>(pr, Layout::fused_qkv).run();
  check_errors("cpu", DType::f32, c, all_errors(a, pr.ref), cpu_bounds(DType::f32));
  CHECK(a.o == b.o);
  CHECK(a.lse == b.lse);
  CHECK(a.dq == b.dq);
  CHECK(a.dk == b.dk);
  CHECK(a.dv == b.dv);
}

TEST_CASE("attention dropout keep fraction is 1 - rate within 5 sigma", "[attention]") {
  for (double p : {0.1, 0.5, 0.9}) {
    const uint32_t thr = attention_dropout_threshold(p);
    const double q = 1 - attention_dropout_rate(p);  // p rounded to 1/256
    const int64_t n = 256 * 256 * 4;
    int64_t kept = 0;
    for (uint32_t h = 0; h < 4; ++h)
      for (uint32_t i = 0; i < 256; ++i)
        for (uint32_t j = 0; j < 256; ++j)
          kept += attention_dropout_keep(42, 3, 1, h, 4, i, j, thr);
    const double sigma = std::sqrt(double(n) * q * (1 - q));
    INFO("p=" << p << " kept=" << kept << " expected=" << double(n) * q);
    CHECK(std::abs(double(kept) - double(n) * q) < 5 * sigma);
  }
  CHECK(attention_dropout_threshold(0.0) == 0u);
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
  Case c;
  c.Nq = 128, c.Nk = 128, c.causal = true;
  AttentionParams p = Problem<float>(c).p;
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
  Case c;
  c.B = 1, c.Nq = 5, c.Nk = 1, c.Hq = c.Hkv = 1, c.D = 3, c.p = 0.5;
  AttentionParams p = Problem<double>(c).p;
  const std::vector<double> q = {1, 2, 3, -1, 0, 2, 0.5, 0.5, 0.5, 2, -2, 1, 0, 0, 1};
  const std::vector<double> k = {0.5, -1, 2}, v = {3, -4, 5}, dO = {1, 1, 1, 2, 0, -1, 0, 1, 0,
                                                                   3, 3, 3, -1, 2, -3};
  std::vector<double> o(15), lse(5), dq(15), dk(3), dv(3);
  attention_reference_forward(p, q.data(), k.data(), v.data(), o.data(), lse.data());
  attention_reference_backward(p, q.data(), k.data(), v.data(), dO.data(), dq.data(), dk.data(),
                               dv.data());
  const uint32_t thr = attention_dropout_threshold(c.p);
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

TEST_CASE("attention reference: D_i from a stored output", "[attention]") {
  // With the exact output, o_stored changes nothing (to rounding); with a perturbed one, a
  // row that sees a single key gets dQ_i = scale (dP_i0 Z - D_i) K_0 with D_i = <dO_i, o_i>.
  Case c;
  c.B = 1, c.Nq = c.Nk = 4, c.Hq = c.Hkv = 1, c.D = 3, c.causal = true, c.p = 0.3;
  AttentionParams p = Problem<double>(c).p;
  const std::vector<double> q = {1, 2, 3, -1, 0, 2, 0.5, 0.5, 0.5, 2, -2, 1};
  const std::vector<double> k = {0.5, -1, 2, 1, 1, 0, -2, 0.5, 1, 0, 3, -1};
  const std::vector<double> v = {3, -4, 5, 1, 2, 3, 0, -1, 2, 4, 0, -2};
  const std::vector<double> dO = {1, 1, 1, 2, 0, -1, 0, 1, 0, 3, 3, 3};
  std::vector<double> o(12), lse(4), dq(12), dk(12), dv(12), dq2(12), dk2(12), dv2(12);
  attention_reference_forward(p, q.data(), k.data(), v.data(), o.data(), lse.data());
  attention_reference_backward(p, q.data(), k.data(), v.data(), dO.data(), dq.data(), dk.data(),
                               dv.data());
  attention_reference_backward(p, q.data(), k.data(), v.data(), dO.data(), dq2.data(),
                               dk2.data(), dv2.data(), {}, o.data());
  for (size_t e = 0; e < 12; ++e) {
    CHECK(dq2[e] == Approx(dq[e]).margin(1e-13));
    CHECK(dk2[e] == Approx(dk[e]).margin(1e-13));
    CHECK(dv2[e] == dv[e]);  // dV does not use D
  }
  std::vector<double> o_rounded = o;
  o_rounded[0] += 1e-3, o_rounded[1] -= 2e-3;  // row 0 (one key) as if stored with rounding
  attention_reference_backward(p, q.data(), k.data(), v.data(), dO.data(), dq2.data(),
                               dk2.data(), dv2.data(), {}, o_rounded.data());
  const double z = attention_dropout_keep(c.seed, c.offset, 0, 0, 1, 0, 0,
                                          attention_dropout_threshold(c.p))
                       ? attention_dropout_keep_scale(c.p)
                       : 0.0;
  const double dp = z * (dO[0] * v[0] + dO[1] * v[1] + dO[2] * v[2]);
  const double di = dO[0] * o_rounded[0] + dO[1] * o_rounded[1] + dO[2] * o_rounded[2];
  for (int d = 0; d < 3; ++d) {
    CHECK(std::abs(dq[size_t(d)]) < 1e-14);
    CHECK(dq2[size_t(d)] == Approx(p.softmax_scale * (dp - di) * k[size_t(d)]).epsilon(1e-12));
  }
  CHECK(std::abs(dq2[0]) > 1e-5);
}

TEST_CASE("attention reference: a subset of heads gives exactly those heads' rows", "[attention]") {
  Case c;
  c.B = 2, c.Nq = 40, c.Nk = 70, c.Hq = 4, c.Hkv = 2, c.causal = true, c.p = 0.1;
  Problem<double> full(c);  // its reference covers every head
  // Both query heads of kv head 1 of batch 1: their O, LSE, dQ rows and the dK, dV rows of
  // (b = 1, kv head 1) are written, and nothing else.
  const std::vector<AttentionHead> heads = {{1, 2}, {1, 3}};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> o(full.ref.o.size(), nan), lse(full.ref.lse.size(), nan);
  std::vector<double> dq(full.ref.dq.size(), nan);
  std::vector<double> dk(full.ref.dk.size(), nan), dv(full.ref.dv.size(), nan);
  attention_reference_forward(full.p, full.q.data(), full.k.data(), full.v.data(), o.data(),
                              lse.data(), heads);
  attention_reference_backward(full.p, full.q.data(), full.k.data(), full.v.data(),
                               full.dO.data(), dq.data(), dk.data(), dv.data(), heads);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t i = 0; i < c.Nq; ++i)
      for (int64_t h = 0; h < c.Hq; ++h) {
        const bool listed = b == 1 && h >= 2;
        const size_t r = size_t((b * c.Hq + h) * c.Nq + i);
        CHECK((listed ? lse[r] == full.ref.lse[r] : std::isnan(lse[r])));
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t e = size_t(((b * c.Nq + i) * c.Hq + h) * c.D + d);
          CHECK((listed ? o[e] == full.ref.o[e] && dq[e] == full.ref.dq[e]
                        : std::isnan(o[e]) && std::isnan(dq[e])));
        }
      }
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.Nk; ++j)
      for (int64_t hk = 0; hk < c.Hkv; ++hk)
        for (int64_t d = 0; d < c.D; ++d) {
          const size_t e = size_t(((b * c.Nk + j) * c.Hkv + hk) * c.D + d);
          if (b == 1 && hk == 1) {
            CHECK(dk[e] == Approx(full.ref.dk[e]).epsilon(1e-13).margin(1e-15));
            CHECK(dv[e] == Approx(full.ref.dv[e]).epsilon(1e-13).margin(1e-15));
          } else {
            CHECK((std::isnan(dk[e]) && std::isnan(dv[e])));
          }
        }
}

TEST_CASE("attention argument checks say what is wrong", "[attention]") {
  Problem<float> problem(Case{});
  HostRun<float> pr(problem, Layout::contiguous);
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

TEST_CASE("attention cuda: every kernel of the tables against the reference",
          "[cuda][attention]") {
  require_cuda_device();
  KernelsRun ran;
  for_all_dtypes([&](auto t) {
    using T = decltype(t);
    for (int64_t D : {32, 64, 96, 128, 256}) {
      if (!attention_cuda_supports_head_dim(D, dtype_of<T>::value)) continue;  // f64 at 256
      KernelsRun at_d;
      for (const Case& c : sweep_cases(D)) {
        const KernelsRun r = check_every_kernel<T>(c);
        at_d.insert(r.begin(), r.end());
      }
      ran.insert(at_d.begin(), at_d.end());
      // In bf16/f16 the mma.sync kernels take D 96 and 256 (the backward only where its 162
      // and 210 KB of shared memory fit a block, as on Hopper).
      if ((std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) && (D == 96 || D == 256)) {
        INFO(dtype_name(dtype_of<T>::value) << " D " << D);
        CHECK(at_d.count("forward mma") == 1);
        if (device_major() == 9) CHECK(at_d.count("backward mma") == 1);
        CHECK(at_d.count("forward tma") + at_d.count("forward wgmma") +
                  at_d.count("backward wgmma") + at_d.count("backward tma") == 0);
      }
    }
  });
  // Every entry of both tables ran on some case (the wgmma and TMA ones need compute
  // capability 9).
  for (const char* direction : {"forward", "backward"}) {
    const auto& table = std::string(direction) == "forward" ? flash_attention_forward_kernels()
                                                             : flash_attention_backward_kernels();
    for (const AttentionKernel& k : table) {
      if ((std::string(k.name) == "wgmma" || std::string(k.name) == "tma") && device_major() != 9)
        continue;
      INFO(direction << " kernel " << k.name << " was never usable in the sweep");
      CHECK(ran.count(std::string(direction) + " " + k.name) == 1);
    }
  }
}

TEST_CASE("attention cuda block masks", "[cuda][attention]") {
  require_cuda_device();
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    Case c;
    c.B = 1, c.Nq = 200, c.Nk = 260, c.D = 64;
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 70, true);
    c.causal = true;
    check_every_kernel<T>(c);
    c.mask = global_local_block_mask(c.Nq, c.Nk, 10, 64);
    c.causal = false, c.p = 0.1, c.Hq = 4, c.Hkv = 2;
    check_every_kernel<T>(c);
  });
}

// A longer causal GQA case with dropout for the sanitizer's race check of the SIMT backward,
// deterministic dQ pass included (check_every_kernel runs it twice and compares the bits;
// the tensor-core ones are race-checked by the "race check" cases below).
TEST_CASE("attention cuda deterministic mode is bit-reproducible", "[cuda][attention][racecheck]") {
  require_cuda_device();
  Case c;
  c.Nq = 300, c.Nk = 333, c.Hq = 4, c.Hkv = 2, c.D = 64, c.causal = true, c.p = 0.1;
  check_every_kernel<float>(c);
}

// The race check (scripts/gpu-check.sh runs compute-sanitizer racecheck on every [racecheck]
// case, one process each, in parallel): every kernel of both tables on one small case that
// still takes every branch of the tile loops (partial query and key tiles, the causal diagonal,
// a block mask that hides whole tiles, a per-head mask that empties some warps of a tile,
// dropout, GQA), per dtype. The larger cases above run in ctest and under memcheck; under
// racecheck they take many minutes each.
template <typename T> void race_case() {
  for (int64_t D : {32, 64, 128}) {
    Case c;
    c.B = 1, c.Nq = 130, c.Nk = 140, c.Hq = 2, c.Hkv = 1, c.D = D, c.causal = true, c.p = 0.1;
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 40, true);
    check_every_kernel<T>(c);
    if (D == 32) continue;
    // No block mask: the Hopper TMA forward takes this one (it leaves block masks to the others).
    c.mask.clear();
    check_every_kernel<T>(c);
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 40, true);
    // Head 0 loses query rows 64..127 (half of a 128-row tile), head 1 loses key tile 2.
    c.p = 0.0, c.causal = false, c.mask_heads = 2;
    c.mask.assign(size_t(2 * 3 * 3), 1);
    for (int64_t bj = 0; bj < 3; ++bj) c.mask[size_t((0 * 3 + 1) * 3 + bj)] = 0;
    for (int64_t bi = 0; bi < 3; ++bi) c.mask[size_t((1 * 3 + bi) * 3 + 2)] = 0;
    check_every_kernel<T>(c);
  }
}
TEST_CASE("attention cuda race check: bf16", "[cuda][attention][racecheck]") {
  require_cuda_device();
  race_case<bfloat16>();
}
TEST_CASE("attention cuda race check: f16", "[cuda][attention][racecheck]") {
  require_cuda_device();
  race_case<float16>();
}
TEST_CASE("attention cuda race check: f32 and f64", "[cuda][attention][racecheck]") {
  require_cuda_device();
  race_case<float>();
  race_case<double>();
}
// Head dims 96 and 256 (the SIMT kernels, 32 x 32 tiles at 256; in bf16/fp16 also the
// mma.sync ones, whose backward at 256 splits the head dim between two warps): the race case's
// first shape.
TEST_CASE("attention cuda race check: head dims 96 and 256", "[cuda][attention][racecheck]") {
  require_cuda_device();
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    for (int64_t D : {96, 256}) {
      if (!attention_cuda_supports_head_dim(D, dtype_of<T>::value)) continue;  // f64 at 256
      Case c;
      c.B = 1, c.Nq = 130, c.Nk = 140, c.Hq = 2, c.Hkv = 1, c.D = D, c.causal = true, c.p = 0.1;
      c.mask = sliding_window_block_mask(c.Nq, c.Nk, 40, true);
      check_every_kernel<T>(c);
    }
  });
}

// The backward's first pass (D_i and the zeroed dQ accumulator) and the dQ conversion read and
// write rows as 16-byte vectors when O, dO and dQ allow it, and element by element otherwise:
// O and dO one element past a 16-byte boundary (and a padded row stride) take the element
// form, and both forms must meet the kernel's bounds against the reference. Both calls run on
// the kernel the dispatcher picks for the shifted one: the tensor-core kernels need O and dO
// aligned (the first GPU run of this test, on an H100 on 2026-12-07, named the aligned call's
// wgmma kernel for both and failed there), so on such a GPU that is the SIMT kernel.
TEST_CASE("attention cuda backward: O and dO rows off 16-byte boundaries", "[cuda][attention]") {
  require_cuda_device();
  for_all_dtypes([](auto t) {
    using T = decltype(t);
    if (std::is_same_v<T, double>) return;  // f64 always takes the element form
    Case c;
    c.B = 2, c.Nq = 70, c.Nk = 90, c.Hq = 4, c.Hkv = 2, c.D = 64, c.causal = true, c.p = 0.1;
    const Problem<T> pr(c);
    DeviceProblem<T> dev(pr);
    dev.use_reference_forward();
    // O and dO copied into rows of D + 1 elements, starting one element into the buffer.
    const int64_t rows = c.B * c.Nq * c.Hq, pitch = c.D + 1;
    const std::vector<T> o = dev.o.host(), dO = dev.dO.host();
    std::vector<T> o2(size_t(rows * pitch + 1)), dO2(o2.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t d = 0; d < c.D; ++d) {
        o2[size_t(1 + r * pitch + d)] = o[size_t(r * c.D + d)];
        dO2[size_t(1 + r * pitch + d)] = dO[size_t(r * c.D + d)];
      }
    DeviceBuffer<T> o_dev(o2), dO_dev(dO2);
    const AttentionParams aligned_p = dev.p;
    AttentionParams shifted_p = dev.p;
    shifted_p.o = o_dev.ptr + 1, shifted_p.do_ = dO_dev.ptr + 1;
    shifted_p.o_head_stride = shifted_p.do_head_stride = pitch;
    shifted_p.o_seq_stride = shifted_p.do_seq_stride = c.Hq * pitch;
    shifted_p.o_batch_stride = shifted_p.do_batch_stride = c.Nq * c.Hq * pitch;
    const std::string bwd = flash_attention_backward_kernel(shifted_p);
    const Bounds b = cuda_backward_bounds(bwd, pr.p.dtype);
    for (bool deterministic : {false, true}) {
      const Values aligned = dev.backward(bwd.c_str(), deterministic);
      check_errors("cuda-backward:" + bwd + ":aligned", pr.p.dtype, c,
                   backward_errors(aligned, pr.ref), b);
      dev.p = shifted_p;
      const Values shifted = dev.backward(bwd.c_str(), deterministic);
      dev.p = aligned_p;
      check_errors("cuda-backward:" + bwd + ":unaligned-o", pr.p.dtype, c,
                   backward_errors(shifted, pr.ref), b);
      // The two D_i differ only in the order of a row's sum: the gradients agree closely.
      // (A bf16 gradient may round the other way: at most a few units of its last place.)
      double worst = 0, largest = 0;
      for (size_t e = 0; e < aligned.dk.size(); ++e) {
        worst = std::max(worst, std::abs(aligned.dk[e] - shifted.dk[e]));
        largest = std::max(largest, std::abs(aligned.dk[e]));
      }
      INFO(describe(c) << " deterministic=" << deterministic << " largest |dK| " << largest);
      CHECK(worst <= 1e-2 * largest);
    }
  });
}

TEST_CASE("attention cuda rejects unsupported head dims", "[cuda][attention]") {
  require_cuda_device();
  Problem<float> problem(Case{});
  HostRun<float> run(problem, Layout::contiguous);
  AttentionParams p = run.p;
  p.D = 80;
  CHECK_THROWS_WITH(flash_attention_forward_cuda(p), Catch::Contains("head dim D=80"));
  p.D = 256, p.dtype = DType::f64;  // the f64 SIMT tiles would not fit in shared memory
  CHECK_THROWS_WITH(flash_attention_forward_cuda(p),
                    Catch::Contains("head dim D=256 in f64") && Catch::Contains("256 not in f64"));
}
#endif  // FLASHGRAD_WITH_CUDA
