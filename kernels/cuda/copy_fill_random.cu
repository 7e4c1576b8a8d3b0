// CUDA kernels: strided copy with dtype conversion, fill, and the Philox random fills.
// Each mirrors its CPU twin in kernels/cpu/copy_fill_random.cpp element for element.
#include "kernels/common/convert.h"
#include "core/philox.h"
#include "core/cuda_check.h"
#include "kernels/cuda/elementwise_launch.cuh"
#include "kernels/kernels.h"

namespace fg::cuda {

namespace {

constexpr int kThreads = 256;
inline int blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 * 8 ? (b < 1 ? 1 : b) : 65535 * 8);
}

template <typename Dst, typename Src>
struct ConvertFn {
  __device__ Dst operator()(Src x) const { return convert<Dst>(x); }
};

template <typename T>
struct ConstantFn {
  T v;
  __device__ T operator()() const { return v; }
};

template <typename T>
__global__ void uniform_kernel(int64_t n, uint64_t seed, uint64_t offset, double low, double high,
                               T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    double u = double(philox_uniform(seed, offset, uint64_t(i)));
    out[i] = Convert<T>::from_double(low + (high - low) * u);
  }
}

template <typename T>
__global__ void normal_kernel(int64_t n, uint64_t seed, uint64_t offset, double mean, double std,
                              T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float u1 = philox_uniform(seed, offset, 2 * uint64_t(i));
    float u2 = philox_uniform(seed, offset, 2 * uint64_t(i) + 1);
    float r = sqrtf(-2.0f * logf(1.0f - u1));
    float z = r * cosf(6.283185307179586f * u2);
    out[i] = Convert<T>::from_double(mean + std * double(z));
  }
}

template <typename T>
__global__ void int_kernel(int64_t n, uint64_t seed, uint64_t offset, int64_t low, uint64_t range,
                           T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t hi = philox_bits(seed, offset, kPhiloxStreamUniform, 2 * uint64_t(i));
    uint64_t lo = philox_bits(seed, offset, kPhiloxStreamUniform, 2 * uint64_t(i) + 1);
    out[i] = Convert<T>::from_double(double(low + int64_t(((hi << 32) | lo) % range)));
  }
}

}  // namespace

void copy(DType dst_dtype, DType src_dtype, int64_t n, const StridedIndexer<2>& idx,
          const void* src, void* dst) {
  if (n == 0) return;
  if (dst_dtype == src_dtype && idx.contiguous) {
    FG_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * dtype_size(dst_dtype),
                                  cudaMemcpyDeviceToDevice, 0));
    return;
  }
  FG_DISPATCH_ALL(dst_dtype, "copy", [&] {
    using D = scalar_t;
    FG_DISPATCH_ALL(src_dtype, "copy", [&] {
      launch_elementwise(n, idx, ConvertFn<D, scalar_t>{}, static_cast<D*>(dst),
                         static_cast<const scalar_t*>(src));
    });
  });
}

void fill(DType dtype, int64_t n, const StridedIndexer<1>& idx, void* out, double value) {
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "fill", [&] {
    const scalar_t v = Convert<scalar_t>::from_double(value);
    // All-zero bits (0.0, not -0.0) on a contiguous tensor: the driver's memset.
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(&v);
    bool zero = true;
    for (size_t i = 0; i < sizeof(v); ++i) zero = zero && bytes[i] == 0;
    if (zero && idx.contiguous) {
      FG_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(n) * sizeof(v), 0));
      return;
    }
    launch_elementwise(n, idx, ConstantFn<scalar_t>{v}, static_cast<scalar_t*>(out));
  });
}

void rand_uniform(DType dtype, int64_t n, uint64_t seed, uint64_t offset, double low,
                  double high, void* out) {
  if (n == 0) return;
  FG_DISPATCH_FLOAT(dtype, "rand", [&] {
    uniform_kernel<scalar_t><<<blocks_for(n), kThreads>>>(n, seed, offset, low, high,
                                                          static_cast<scalar_t*>(out));
    FG_LAUNCH_CHECK();
  });
}

void rand_normal(DType dtype, int64_t n, uint64_t seed, uint64_t offset, double mean, double std,
                 void* out) {
  if (n == 0) return;
  FG_DISPATCH_FLOAT(dtype, "randn", [&] {
    normal_kernel<scalar_t><<<blocks_for(n), kThreads>>>(n, seed, offset, mean, std,
                                                         static_cast<scalar_t*>(out));
    FG_LAUNCH_CHECK();
  });
}

void rand_int(DType dtype, int64_t n, uint64_t seed, uint64_t offset, int64_t low, int64_t high,
              void* out) {
  if (n == 0) return;
  FG_DISPATCH_ALL(dtype, "randint", [&] {
    int_kernel<scalar_t><<<blocks_for(n), kThreads>>>(n, seed, offset, low, uint64_t(high - low),
                                                      static_cast<scalar_t*>(out));
    FG_LAUNCH_CHECK();
  });
}

}  // namespace fg::cuda
