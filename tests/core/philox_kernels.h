// Host entry points of tests/core/philox_kernels.cu (CUDA builds only).
#pragma once
#include <cstdint>
#include <vector>

namespace fg::test {

struct StreamDraws {
  std::vector<uint32_t> from_curand, from_flashgrad;
};
// For each start element first[t]: per_thread consecutive 32-bit words of the flat stream
// (seed, offset, stream), drawn on the GPU with cuRAND's curand_init/curand and with philox_bits.
StreamDraws draw_streams_on_device(uint64_t seed, uint64_t offset, uint32_t stream,
                                   const std::vector<uint64_t>& first, int per_thread);
// cuRAND's curand_Philox4x32_10 on the GPU for each (c0, c1, c2, c3, k0, k1) in counters_keys.
std::vector<uint32_t> curand_blocks_on_device(const std::vector<uint32_t>& counters_keys);

}  // namespace fg::test
