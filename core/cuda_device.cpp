// Cached CUDA device properties (core/cuda_device.h). Empty in CPU-only builds.
#ifdef FLASHGRAD_WITH_CUDA
#include "core/cuda_device.h"

#include <cuda_runtime.h>

#include <memory>
#include <mutex>
#include <vector>

#include "core/cuda_check.h"

namespace fg {

int cuda_current_device() {
  int dev = 0;
  FG_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

const CudaDeviceInfo& cuda_device_info(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CudaDeviceInfo>> cache;
  std::lock_guard<std::mutex> lock(mu);
  int count = 0;
  FG_CUDA_CHECK(cudaGetDeviceCount(&count));
  FG_CHECK(device >= 0 && device < count, "cuda_device_info: no CUDA device ", device, " (",
           count, " present)");
  if (cache.size() < size_t(count)) cache.resize(size_t(count));
  if (!cache[size_t(device)]) {
    cudaDeviceProp prop{};
    FG_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    auto info = std::make_unique<CudaDeviceInfo>();
    info->index = device;
    info->name = prop.name;
    info->major = prop.major;
    info->minor = prop.minor;
    info->sm_count = prop.multiProcessorCount;
    info->total_memory = prop.totalGlobalMem;
    info->shared_memory_optin = prop.sharedMemPerBlockOptin;
    cache[size_t(device)] = std::move(info);
  }
  return *cache[size_t(device)];
}

}  // namespace fg
#endif  // FLASHGRAD_WITH_CUDA
