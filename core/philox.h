// Philox4x32-10, the counter-based generator behind every random number in flashgrad.
//
// A counter-based generator maps (key, counter) to random bits with no state, so any element
// of a random tensor or of a dropout mask can be regenerated anywhere, in any order: on the
// CPU, in a CUDA kernel, in the forward pass or in the backward pass. That is what lets the
// attention kernels recompute the dropout mask instead of storing it, and what makes the CPU,
// CUDA and naive paths use bit-identical masks.
//
// Rounds and constants follow Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"
// (SC'11), which is also the generator cuRAND's device API calls Philox4_32_10. In CUDA code
// the ten rounds are cuRAND's own (curand_Philox4x32_10); the CPU runs the same rounds written
// out below. tests/core/test_philox.cpp pins both to the published known-answer vectors and
// checks that every flat stream here equals a cuRAND curand_init/curand sequence (see
// philox_curand_seed below), so CPU, CUDA and cuRAND agree bit for bit.
#pragma once
#include <cstdint>

#include "core/half.h"  // FG_HD

#if defined(__CUDACC__)
#include <curand_philox4x32_x.h>
#endif

namespace fg {

struct Philox4 {
  uint32_t x[4];
};

// The high 32 bits of the 64-bit product (the CPU rounds below).
FG_HD uint32_t philox_mulhi(uint32_t a, uint32_t b) {
  return uint32_t((uint64_t(a) * uint64_t(b)) >> 32);
}

// One Philox4x32-10 block: counter (c0, c1, c2, c3), key (k0, k1) -> four 32-bit words.
FG_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                            uint32_t k1) {
#if defined(__CUDA_ARCH__)
  const uint4 r = curand_Philox4x32_10(make_uint4(c0, c1, c2, c3), make_uint2(k0, k1));
  return Philox4{{r.x, r.y, r.z, r.w}};
#else
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0 = philox_mulhi(M0, c0), lo0 = M0 * c0;
    uint32_t hi1 = philox_mulhi(M1, c2), lo1 = M1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
#endif
}

// The key is the 64-bit seed; the high half of the 64-bit offset is folded into it so that the
// counter's last word can carry the offset's low half.
FG_HD void philox_key(uint64_t seed, uint64_t offset, uint32_t& k0, uint32_t& k1) {
  k0 = uint32_t(seed);
  k1 = uint32_t(seed >> 32) ^ uint32_t(offset >> 32);
}

// Stream tags keep the counters of different uses apart (counter word 2).
constexpr uint32_t kPhiloxStreamUniform = 0xFFFFFFFEu;
constexpr uint32_t kPhiloxStreamDropout = 0xFFFFFFFFu;
// Attention dropout uses word 2 for b * Hq + h, which check_attention_params keeps below
// these tags (B * Hq < 2^32 - 2).

// 32 random bits for element n of a flat stream: element n takes word n % 4 of block n / 4.
// The counter is (n / 4 as 64 bits, stream, offset low half): exactly the sequence cuRAND's
// curand_init(philox_curand_seed(seed, offset), philox_curand_subsequence(stream, offset), n,
// &state) followed by curand(&state) draws.
FG_HD uint32_t philox_bits(uint64_t seed, uint64_t offset, uint32_t stream, uint64_t n) {
  uint32_t k0, k1;
  philox_key(seed, offset, k0, k1);
  uint64_t q = n >> 2;
  Philox4 r = philox4x32_10(uint32_t(q), uint32_t(q >> 32), stream, uint32_t(offset), k0, k1);
  return r.x[n & 3];
}

FG_HD uint64_t philox_curand_seed(uint64_t seed, uint64_t offset) {
  return seed ^ (offset & 0xFFFFFFFF00000000ull);
}
FG_HD uint64_t philox_curand_subsequence(uint32_t stream, uint64_t offset) {
  return uint64_t(stream) | (offset << 32);
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
FG_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t n) {
  return float(philox_bits(seed, offset, kPhiloxStreamUniform, n) >> 8) * (1.0f / 16777216.0f);
}

// Generic dropout (fg::dropout, fg::dropout_add: the model's embedding, residual and MLP
// dropouts) draws 16 random bits per element, so that one Philox call serves 8 elements:
// element n takes bits 16 (n % 2) .. 16 (n % 2) + 15 of word (n / 2) % 4 of the block with
// counter (n / 8 as 64 bits, kPhiloxStreamDropout, offset's low half), and is kept iff those
// 16 bits reach the threshold round(p * 65536) (dropout_threshold). The rate applied is thus
// p rounded to a multiple of 2^-16 (dropout_rate), and kept elements are scaled by
// 65536 / (65536 - threshold) (dropout_keep_scale), so the expected output is exactly the
// input. p = 0 keeps everything. (32 bits an element cost one Philox call per 4 elements,
// which made dropout the one elementwise kernel bound by its arithmetic, not by memory.)
//
// Both dropout rules (this one on 2^16 levels, attention's below on 2^8) round the same way:
// the threshold round(p * levels) in [0, levels], and the factor on kept elements
// levels / (levels - threshold), or 0 when nothing can be kept.
FG_HD uint32_t dropout_levels_threshold(double p, uint32_t levels) {
  const double t = p * double(levels) + 0.5;
  return t <= 0.0 ? 0u : t >= double(levels) ? levels : uint32_t(t);
}
FG_HD double dropout_levels_keep_scale(uint32_t threshold, uint32_t levels) {
  return threshold >= levels ? 0.0 : double(levels) / double(levels - threshold);
}

FG_HD uint32_t dropout_threshold(double p) { return dropout_levels_threshold(p, 65536u); }
FG_HD double dropout_rate(double p) { return dropout_threshold(p) / 65536.0; }
FG_HD double dropout_keep_scale(double p) {
  return dropout_levels_keep_scale(dropout_threshold(p), 65536u);
}

// The 16 bits of element k (0..7) of a block of 8 elements.
FG_HD uint32_t dropout_bits16(const Philox4& r, uint32_t k) {
  return (r.x[(k >> 1) & 3u] >> (16u * (k & 1u))) & 0xFFFFu;
}
// The Philox block of elements 8 g .. 8 g + 7 of a generic dropout.
FG_HD Philox4 dropout_block(uint64_t seed, uint64_t offset, uint64_t g) {
  uint32_t k0, k1;
  philox_key(seed, offset, k0, k1);
  return philox4x32_10(uint32_t(g), uint32_t(g >> 32), kPhiloxStreamDropout, uint32_t(offset), k0,
                       k1);
}
// Whether element n of a generic dropout is kept.
FG_HD bool dropout_keep(uint64_t seed, uint64_t offset, uint64_t n, uint32_t threshold) {
  return dropout_bits16(dropout_block(seed, offset, n >> 3), uint32_t(n & 7u)) >= threshold;
}

// Attention dropout draws 8 random bits per element, so that one Philox call serves 16
// elements (as flash-attn does): the rate is rounded to a multiple of 1/256 and the kept
// elements are scaled by the inverse of the rounded keep rate, so the expected output is
// exactly the undropped one. p = 0.1 drops 26/256 = 0.1016; a rate below 1/512 drops nothing;
// one above 511/512 drops everything (and the kept scale is then 0, nothing being kept).
//
// The threshold a byte must reach to be kept: round(p * 256), in [0, 256].
FG_HD uint32_t attention_dropout_threshold(double p) { return dropout_levels_threshold(p, 256u); }
// The rate attention dropout actually applies for a requested p: threshold / 256.
FG_HD double attention_dropout_rate(double p) { return attention_dropout_threshold(p) / 256.0; }
// The factor on kept elements: 1 / (1 - rate), or 0 when nothing can be kept.
FG_HD double attention_dropout_keep_scale(double p) {
  return dropout_levels_keep_scale(attention_dropout_threshold(p), 256u);
}

// The attention dropout definition, shared by the CPU flash path, the CUDA kernels and the
// naive path: element (b, h, i, j) of the probability matrix (batch b, query head h of Hq,
// query row i, key column j) is kept iff this returns true. Sixteen consecutive columns share
// one Philox call: counter (j / 16, i, b * Hq + h, offset_lo); column j takes byte j % 16 of
// the call's 16 bytes (byte k is bits 8 (k % 4) .. 8 (k % 4) + 7 of word k / 4), and is kept
// iff that byte >= threshold (attention_dropout_threshold).
FG_HD uint32_t attention_dropout_byte(const Philox4& r, uint32_t j) {
  return (r.x[(j >> 2) & 3u] >> (8u * (j & 3u))) & 0xFFu;
}
FG_HD bool attention_dropout_keep(uint64_t seed, uint64_t offset, uint32_t b, uint32_t h,
                                  uint32_t num_heads, uint32_t i, uint32_t j,
                                  uint32_t threshold) {
  uint32_t k0, k1;
  philox_key(seed, offset, k0, k1);
  Philox4 r = philox4x32_10(j >> 4, i, b * num_heads + h, uint32_t(offset), k0, k1);
  return attention_dropout_byte(r, j) >= threshold;
}

// The same rule for the 16 columns 16 g .. 16 g + 15 of row i at once, from their one Philox
// call: bit k is whether column 16 g + k is kept (for code that walks a row, as the CPU does).
FG_HD uint32_t attention_dropout_keep16(uint64_t seed, uint64_t offset, uint32_t b, uint32_t h,
                                        uint32_t num_heads, uint32_t i, uint32_t g,
                                        uint32_t threshold) {
  uint32_t k0, k1;
  philox_key(seed, offset, k0, k1);
  Philox4 r = philox4x32_10(g, i, b * num_heads + h, uint32_t(offset), k0, k1);
  uint32_t bits = 0;
  for (uint32_t k = 0; k < 16; ++k) bits |= uint32_t(attention_dropout_byte(r, k) >= threshold) << k;
  return bits;
}

}  // namespace fg
