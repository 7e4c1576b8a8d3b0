// Philox4x32-10 pinned down: the published known-answer vectors, the flat-stream layout, and
// (on a GPU) bit equality with cuRAND's own Philox4_32_10, both the raw block function and the
// curand_init/curand generator.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "core/philox.h"
#ifdef FLASHGRAD_WITH_CUDA
#include "support/test_util.h"
#include "tests/core/philox_kernels.h"
#endif

using namespace fg;

namespace {

struct Kat {
  uint32_t ctr[4], key[2], out[4];
};
// Known-answer vectors of Philox4x32-10 from the Random123 distribution (file kat_vectors;
// Salmon et al., SC'11): counter, key, expected output.
const Kat kKats[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

}  // namespace

TEST_CASE("philox4x32_10 matches the published known-answer vectors", "[philox]") {
  for (const Kat& k : kKats) {
    Philox4 r = philox4x32_10(k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]);
    for (int w = 0; w < 4; ++w) CHECK(r.x[w] == k.out[w]);
  }
}

TEST_CASE("philox_bits: element n is word n % 4 of block (n / 4, stream, offset)", "[philox]") {
  const uint64_t seed = 0x0123456789abcdefull, offset = 0x00000007fffffff3ull;
  const uint32_t stream = kPhiloxStreamUniform;
  for (uint64_t n : {0ull, 1ull, 2ull, 3ull, 4ull, 5ull, 1023ull, (1ull << 33) + 6}) {
    const uint64_t q = n / 4;
    Philox4 r = philox4x32_10(uint32_t(q), uint32_t(q >> 32), stream, uint32_t(offset),
                              uint32_t(seed), uint32_t(seed >> 32) ^ uint32_t(offset >> 32));
    CHECK(philox_bits(seed, offset, stream, n) == r.x[n % 4]);
  }
  // Different offsets and streams give different words for the same element.
  CHECK(philox_bits(seed, 0, stream, 0) != philox_bits(seed, 1, stream, 0));
  CHECK(philox_bits(seed, 0, kPhiloxStreamUniform, 0) != philox_bits(seed, 0, kPhiloxStreamDropout, 0));
  CHECK(philox_bits(seed, 0, stream, 0) != philox_bits(seed, 1ull << 32, stream, 0));
}

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("cuRAND's curand_Philox4x32_10 gives the same blocks as the CPU rounds", "[philox][cuda]") {
  std::vector<uint32_t> ck;
  for (const Kat& k : kKats) ck.insert(ck.end(), {k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1]});
  uint32_t x = 0x9e3779b9u;  // a few hundred more (counter, key) pairs from a simple LCG
  for (int i = 0; i < 6 * 300; ++i) ck.push_back(x = x * 1664525u + 1013904223u);
  std::vector<uint32_t> dev = test::curand_blocks_on_device(ck);
  for (size_t t = 0; t < ck.size() / 6; ++t) {
    const uint32_t* c = &ck[6 * t];
    Philox4 r = philox4x32_10(c[0], c[1], c[2], c[3], c[4], c[5]);
    for (int w = 0; w < 4; ++w) REQUIRE(dev[4 * t + w] == r.x[w]);
  }
}

TEST_CASE("flat Philox streams equal cuRAND's curand_init/curand sequences", "[philox][cuda]") {
  const std::vector<uint64_t> first = {0, 1, 2, 3, 4, 7, 1000, 4096 + 3, (1ull << 34) + 1};
  const int per_thread = 11;  // crosses block boundaries from every start position
  for (uint64_t seed : {0ull, 0x5eedull, 0xfedcba9876543210ull})
    for (uint64_t offset : {0ull, 5ull, 0x100000002ull})
      for (uint32_t stream : {kPhiloxStreamUniform, kPhiloxStreamDropout, 7u}) {
        test::StreamDraws d = test::draw_streams_on_device(seed, offset, stream, first, per_thread);
        REQUIRE(d.from_curand == d.from_flashgrad);
        for (size_t t = 0; t < first.size(); ++t)
          for (int k = 0; k < per_thread; ++k)
            REQUIRE(d.from_curand[t * per_thread + k] == philox_bits(seed, offset, stream, first[t] + k));
      }
}
#endif
