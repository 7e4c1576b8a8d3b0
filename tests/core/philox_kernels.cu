// Kernels for tests/core/test_philox.cpp: the same random words drawn through cuRAND's device
// generator (curand_init + curand) and through flashgrad's counter functions (core/philox.h).
#include <curand_kernel.h>

#include <cstdint>

#include "core/cuda_check.h"
#include "core/philox.h"
#include "tests/core/philox_kernels.h"

namespace fg::test {
namespace {

// Thread t draws `per_thread` consecutive words of the stream starting at element
// first[t], once with cuRAND's generator and once with philox_bits.
__global__ void draw_streams(uint64_t seed, uint64_t offset, uint32_t stream,
                             const uint64_t* first, int threads, int per_thread,
                             uint32_t* from_curand, uint32_t* from_flashgrad) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= threads) return;
  curandStatePhilox4_32_10_t s;
  curand_init(philox_curand_seed(seed, offset), philox_curand_subsequence(stream, offset),
              first[t], &s);
  for (int k = 0; k < per_thread; ++k) {
    from_curand[t * per_thread + k] = curand(&s);
    from_flashgrad[t * per_thread + k] = philox_bits(seed, offset, stream, first[t] + k);
  }
}

// Raw blocks: cuRAND's curand_Philox4x32_10 against philox4x32_10 as compiled for the device
// (which calls it) and as the host rounds compute it (compared on the host by the test).
__global__ void draw_blocks(const uint32_t* counters_keys, int n, uint32_t* out) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const uint32_t* ck = counters_keys + 6 * t;
  const uint4 r = curand_Philox4x32_10(make_uint4(ck[0], ck[1], ck[2], ck[3]),
                                       make_uint2(ck[4], ck[5]));
  out[4 * t + 0] = r.x;
  out[4 * t + 1] = r.y;
  out[4 * t + 2] = r.z;
  out[4 * t + 3] = r.w;
}

template <typename T> T* to_device(const std::vector<T>& v) {
  T* p = nullptr;
  FG_CUDA_CHECK(cudaMalloc(&p, v.size() * sizeof(T)));
  FG_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}
template <typename T> std::vector<T> to_host(const T* p, size_t n) {
  std::vector<T> v(n);
  FG_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

}  // namespace

StreamDraws draw_streams_on_device(uint64_t seed, uint64_t offset, uint32_t stream,
                                   const std::vector<uint64_t>& first, int per_thread) {
  const int threads = int(first.size());
  uint64_t* d_first = to_device(first);
  uint32_t *a = nullptr, *b = nullptr;
  const size_t n = size_t(threads) * size_t(per_thread);
  FG_CUDA_CHECK(cudaMalloc(&a, n * sizeof(uint32_t)));
  FG_CUDA_CHECK(cudaMalloc(&b, n * sizeof(uint32_t)));
  draw_streams<<<(threads + 127) / 128, 128>>>(seed, offset, stream, d_first, threads,
                                                per_thread, a, b);
  FG_LAUNCH_CHECK();
  StreamDraws r{to_host(a, n), to_host(b, n)};
  FG_CUDA_CHECK(cudaFree(d_first));
  FG_CUDA_CHECK(cudaFree(a));
  FG_CUDA_CHECK(cudaFree(b));
  return r;
}

std::vector<uint32_t> curand_blocks_on_device(const std::vector<uint32_t>& counters_keys) {
  const int n = int(counters_keys.size() / 6);
  uint32_t* d_in = to_device(counters_keys);
  uint32_t* d_out = nullptr;
  FG_CUDA_CHECK(cudaMalloc(&d_out, size_t(4 * n) * sizeof(uint32_t)));
  draw_blocks<<<(n + 127) / 128, 128>>>(d_in, n, d_out);
  FG_LAUNCH_CHECK();
  std::vector<uint32_t> out = to_host(d_out, size_t(4 * n));
  FG_CUDA_CHECK(cudaFree(d_in));
  FG_CUDA_CHECK(cudaFree(d_out));
  return out;
}

}  // namespace fg::test
