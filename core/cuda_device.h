// What flashgrad asks of a CUDA device, queried once per device and cached: kernels that pick
// a code path by compute capability or size their grids by SM count read it here instead of
// calling the runtime on every launch.
#pragma once
#include <cstddef>
#include <string>

namespace fg {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;         // compute capability
  int sm_count = 0;                 // streaming multiprocessors
  size_t total_memory = 0;          // bytes
  size_t shared_memory_optin = 0;   // bytes of shared memory a block may opt in to
};

// The current device of the calling thread (cudaGetDevice).
int cuda_current_device();
// Properties of `device`, read on first use and cached (thread-safe). Throws fg::Error when
// the device does not exist. Only in CUDA builds.
const CudaDeviceInfo& cuda_device_info(int device);
inline const CudaDeviceInfo& cuda_current_device_info() {
  return cuda_device_info(cuda_current_device());
}

}  // namespace fg
