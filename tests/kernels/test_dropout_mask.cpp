// The attention dropout mask checked independently of the code that uses it: its counter layout
// re-derived from the Philox block function, masks that differ wherever their inputs differ,
// keep rates balanced over rows, columns and the four words of a block, and dropout that is
// unbiased (the mean output over many seeds approaches the output without dropout).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/philox.h"
#include "kernels/attention/attention.h"

using namespace fg;

namespace {

// The documented rule (core/philox.h), written out again: counter (j / 16, i, b * Hq + h,
// offset low half), key (seed low, seed high ^ offset high), byte j % 16 of the four words
// read as 16 little-endian bytes, kept iff >= threshold.
bool keep_by_definition(uint64_t seed, uint64_t offset, uint32_t b, uint32_t h, uint32_t Hq,
                        uint32_t i, uint32_t j, uint32_t threshold) {
  Philox4 r = philox4x32_10(j / 16, i, b * Hq + h, uint32_t(offset), uint32_t(seed),
                            uint32_t(seed >> 32) ^ uint32_t(offset >> 32));
  uint8_t bytes[16];
  for (int w = 0; w < 4; ++w)
    for (int k = 0; k < 4; ++k) bytes[4 * w + k] = uint8_t(r.x[w] >> (8 * k));
  return bytes[j % 16] >= threshold;
}

struct MaskArgs {
  uint64_t seed = 42, offset = 0;
  uint32_t b = 0, h = 0, Hq = 4;
};
constexpr int kN = 128;  // rows and columns of the masks compared below

std::vector<uint8_t> mask(const MaskArgs& a, double p) {
  const uint32_t thr = attention_dropout_threshold(p);
  std::vector<uint8_t> m(size_t(kN * kN));
  for (int i = 0; i < kN; ++i)
    for (int j = 0; j < kN; ++j)
      m[size_t(i * kN + j)] = attention_dropout_keep(a.seed, a.offset, a.b, a.h, a.Hq, uint32_t(i),
                                                     uint32_t(j), thr);
  return m;
}

double disagreement(const std::vector<uint8_t>& x, const std::vector<uint8_t>& y) {
  size_t n = 0;
  for (size_t k = 0; k < x.size(); ++k) n += x[k] != y[k];
  return double(n) / double(x.size());
}

}  // namespace

TEST_CASE("attention_dropout_keep follows the documented counter layout", "[dropout]") {
  const uint32_t thr = attention_dropout_threshold(0.3);
  for (uint64_t seed : {1ull, 0xabcdef0123456789ull})
    for (uint64_t offset : {0ull, 3ull, 0x500000001ull})
      for (uint32_t b = 0; b < 3; ++b)
        for (uint32_t h = 0; h < 3; ++h)
          for (uint32_t i = 0; i < 70; i += 3)
            for (uint32_t j = 0; j < 70; j += 1)
              REQUIRE(attention_dropout_keep(seed, offset, b, h, 3, i, j, thr) ==
                      keep_by_definition(seed, offset, b, h, 3, i, j, thr));
}

TEST_CASE("attention_dropout_keep16 gives the bits of 16 columns by the same rule", "[dropout]") {
  for (double p : {0.0, 0.1, 0.5, 0.97})
    for (uint64_t seed : {3ull, 0xfeedbeef12345678ull})
      for (uint32_t i = 0; i < 40; i += 7)
        for (uint32_t g = 0; g < 5; ++g) {
          const uint32_t thr = attention_dropout_threshold(p);
          const uint32_t bits = attention_dropout_keep16(seed, 0x300000005ull, 2, 1, 3, i, g, thr);
          for (uint32_t k = 0; k < 16; ++k)
            REQUIRE(((bits >> k) & 1u) ==
                    uint32_t(attention_dropout_keep(seed, 0x300000005ull, 2, 1, 3, i, 16 * g + k, thr)));
        }
}

TEST_CASE("dropout masks differ across batch, head, seed and offset", "[dropout]") {
  // Two independent masks with keep probability q disagree on a fraction 2q(1-q) of places:
  // 0.5 at p = 0.5, with a standard deviation of 0.5/128 over 128 x 128 places.
  const double p = 0.5;
  const MaskArgs base;
  const std::vector<uint8_t> m0 = mask(base, p);
  MaskArgs other[5] = {base, base, base, base, base};
  other[0].b = 1;
  other[1].h = 1;
  other[2].seed = 43;
  other[3].offset = 1;
  other[4].offset = 1ull << 32;  // the offset's high half reaches the key
  for (const MaskArgs& a : other) {
    const double d = disagreement(m0, mask(a, p));
    INFO("b " << a.b << " h " << a.h << " seed " << a.seed << " offset " << a.offset);
    CHECK(d > 0.47);
    CHECK(d < 0.53);
  }
  // Batch b, head h and batch b+1, head h - Hq... never share a counter: (b, h) = (1, 0) and
  // (0, Hq) would, but h < Hq always; check the neighbours that a wrong b * Hq + h could merge.
  MaskArgs x = base, y = base;
  x.b = 1; x.h = 0; y.b = 0; y.h = 3;
  CHECK(disagreement(mask(x, p), mask(y, p)) > 0.47);
}

TEST_CASE("dropout keep rates are balanced over rows, columns and block bytes", "[dropout]") {
  const double p = 0.3, q = 1 - attention_dropout_rate(p);
  const std::vector<uint8_t> m = mask(MaskArgs{}, p);
  // Per row and per column: 128 draws, sd = sqrt(q p / 128) = 0.041; 5 sd.
  const double row_sd = std::sqrt(q * p / kN);
  std::vector<double> col(kN, 0.0);
  for (int i = 0; i < kN; ++i) {
    double r = 0;
    for (int j = 0; j < kN; ++j) {
      r += m[size_t(i * kN + j)];
      col[size_t(j)] += m[size_t(i * kN + j)];
    }
    CHECK(std::fabs(r / kN - q) < 5 * row_sd);
  }
  for (int j = 0; j < kN; ++j) CHECK(std::fabs(col[size_t(j)] / kN - q) < 5 * row_sd);
  // Per byte of the Philox block (j % 16): 1024 draws each, sd = 0.014; 5 sd.
  const double byte_sd = std::sqrt(q * p / (kN * kN / 16));
  for (int w = 0; w < 16; ++w) {
    double s = 0;
    for (int i = 0; i < kN; ++i)
      for (int j = w; j < kN; j += 16) s += m[size_t(i * kN + j)];
    CHECK(std::fabs(s / (kN * kN / 16) - q) < 5 * byte_sd);
  }
  // Neighbouring rows are not copies of each other (a counter that ignored i would make them so).
  for (int i = 0; i + 1 < kN; ++i) {
    int same = 0;
    for (int j = 0; j < kN; ++j) same += m[size_t(i * kN + j)] == m[size_t((i + 1) * kN + j)];
    CHECK(same < kN - 16);
  }
}

TEST_CASE("attention dropout is unbiased: the mean over seeds approaches the plain output", "[dropout]") {
  // O = sum_j P_ij Z_ij / (1 - p) V_j with E[Z] = 1 - p, so E[O] is the output without dropout.
  // Over S seeds the mean's error shrinks like 1/sqrt(S): it must fall about 4x from 16 to 256
  // seeds and end small.
  const int64_t B = 1, N = 24, H = 2, D = 8;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> q(size_t(B * N * H * D)), k(q.size()), v(q.size());
  for (auto* t : {&q, &k, &v})
    for (double& x : *t) x = u(rng);
  auto run = [&](double p, uint64_t seed) {
    std::vector<double> o(q.size()), lse(size_t(B * H * N));
    AttentionParams prm;
    prm.B = B; prm.Nq = N; prm.Nk = N; prm.Hq = H; prm.Hkv = H; prm.D = D;
    prm.dtype = DType::f64;
    set_contiguous_strides(prm);
    prm.q = q.data(); prm.k = k.data(); prm.v = v.data(); prm.o = o.data(); prm.lse = lse.data();
    prm.softmax_scale = 1.0 / std::sqrt(double(D));
    prm.dropout_p = p;
    prm.seed = seed;
    flash_attention_forward_cpu(prm);
    return o;
  };
  const std::vector<double> plain = run(0.0, 0);
  auto rel_error_of_mean = [&](int seeds) {
    std::vector<double> mean(plain.size(), 0.0);
    for (int s = 0; s < seeds; ++s) {
      std::vector<double> o = run(0.4, 1000 + uint64_t(s));
      for (size_t e = 0; e < o.size(); ++e) mean[e] += o[e] / seeds;
    }
    double num = 0, den = 0;
    for (size_t e = 0; e < plain.size(); ++e) {
      num += (mean[e] - plain[e]) * (mean[e] - plain[e]);
      den += plain[e] * plain[e];
    }
    return std::sqrt(num / den);
  };
  const double e16 = rel_error_of_mean(16), e256 = rel_error_of_mean(256);
  INFO("relative error of the mean: 16 seeds " << e16 << ", 256 seeds " << e256);
  CHECK(e256 < e16 / 2.5);
  CHECK(e256 < 0.1);
}

TEST_CASE("attention dropout rounds the rate to 1/256 and keeps the expectation exact", "[dropout]") {
  // The threshold is the nearest multiple of 1/256; the kept scale is 1 / (1 - that rate).
  CHECK(attention_dropout_threshold(0.0) == 0u);
  CHECK(attention_dropout_threshold(0.1) == 26u);  // 25.6 rounds up: rate 0.1016
  CHECK(attention_dropout_threshold(0.5) == 128u);
  CHECK(attention_dropout_threshold(1.0 / 1024) == 0u);  // below 1/512: nothing dropped
  CHECK(attention_dropout_threshold(0.999) == 256u);     // above 511/512: everything dropped
  CHECK(attention_dropout_keep_scale(0.999) == 0.0);
  for (double p : {0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9}) {
    INFO("p " << p);
    CHECK(std::fabs(attention_dropout_rate(p) - p) <= 1.0 / 512 + 1e-12);
    CHECK(attention_dropout_keep_scale(p) * (1.0 - attention_dropout_rate(p)) == Approx(1.0));
  }
  // A threshold of 256 keeps no byte; 0 keeps every byte.
  for (uint32_t j = 0; j < 64; ++j) {
    CHECK_FALSE(attention_dropout_keep(5, 0, 0, 0, 1, 3, j, 256u));
    CHECK(attention_dropout_keep(5, 0, 0, 0, 1, 3, j, 0u));
  }
}

// The generic dropout (fg::dropout, fg::dropout_add) written out again from its documented
// rule: counter (n / 8 as 64 bits, the dropout stream tag, offset low half), the attention key,
// bits 16 (n % 2) .. of word (n / 2) % 4, kept iff they reach the threshold.
TEST_CASE("generic dropout follows its documented counter layout, 16 bits per element",
          "[dropout]") {
  for (uint64_t seed : {uint64_t(1), uint64_t(0x1234567890ABCDEFull)})
    for (uint64_t offset : {uint64_t(0), uint64_t(0x700000003ull)})
      for (uint64_t n : {uint64_t(0), uint64_t(1), uint64_t(7), uint64_t(8), uint64_t(13),
                         uint64_t(4099), uint64_t(0x3FFFFFFFFull)}) {
        const uint64_t g = n / 8;
        Philox4 r = philox4x32_10(uint32_t(g), uint32_t(g >> 32), 0xFFFFFFFFu, uint32_t(offset),
                                  uint32_t(seed), uint32_t(seed >> 32) ^ uint32_t(offset >> 32));
        const uint32_t bits = (r.x[(n / 2) % 4] >> (16 * (n % 2))) & 0xFFFFu;
        for (uint32_t th : {0u, 1u, 6554u, 32768u, 65535u, 65536u}) {
          INFO("seed " << seed << " offset " << offset << " n " << n << " threshold " << th);
          REQUIRE(dropout_keep(seed, offset, n, th) == (bits >= th));
        }
      }
}

TEST_CASE("generic dropout rounds the rate to 2^-16 and keeps the expectation exact",
          "[dropout]") {
  CHECK(dropout_threshold(0.0) == 0u);
  CHECK(dropout_threshold(0.1) == 6554u);  // 6553.6 rounds up
  CHECK(dropout_threshold(0.25) == 16384u);
  CHECK(dropout_threshold(1.0 / 262144) == 0u);  // below 2^-17: nothing dropped
  CHECK(dropout_threshold(1.0) == 65536u);
  CHECK(dropout_keep_scale(0.25) == 4.0 / 3.0);
  CHECK(dropout_keep_scale(1.0) == 0.0);
  for (double p : {0.0, 0.01, 0.1, 0.2, 0.3, 0.5, 0.9}) {
    INFO("p " << p);
    CHECK(std::fabs(dropout_rate(p) - p) <= 1.0 / 131072 + 1e-15);
    CHECK(dropout_keep_scale(p) * (1.0 - dropout_rate(p)) == Approx(1.0).epsilon(1e-15));
  }
  // Threshold 0 keeps all; 65536 none. The 16-bit halves of one block are balanced: over many
  // blocks each of the 8 positions keeps about 1 - p.
  const uint32_t th = dropout_threshold(0.3);
  const int blocks = 20000;
  for (uint32_t k = 0; k < 8; ++k) {
    int kept = 0;
    for (int g = 0; g < blocks; ++g) {
      REQUIRE(dropout_keep(3, 1, uint64_t(8 * g + k), 0u));
      REQUIRE_FALSE(dropout_keep(3, 1, uint64_t(8 * g + k), 65536u));
      kept += dropout_keep(3, 1, uint64_t(8 * g + k), th);
    }
    const double mean = blocks * (1 - dropout_rate(0.3)), sigma = std::sqrt(blocks * 0.3 * 0.7);
    INFO("position " << k << " kept " << kept);
    CHECK(std::fabs(kept - mean) < 5 * sigma);
  }
}
