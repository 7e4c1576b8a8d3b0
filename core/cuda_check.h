// Checks for every CUDA runtime call, cuBLAS call and kernel launch, naming file and line.
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "core/env.h"
#include "core/error.h"

namespace fg {
[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what, const char* file,
                                          int line) {
  throw Error(str("CUDA error: ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ") in ", what,
                  " at ", file, ":", line));
}
}  // namespace fg

#define FG_CUDA_CHECK(CALL)                                                 \
  do {                                                                      \
    cudaError_t fg_err_ = (CALL);                                           \
    if (fg_err_ != cudaSuccess) ::fg::throw_cuda_error(fg_err_, #CALL, __FILE__, __LINE__); \
  } while (0)

// After every <<<...>>> launch: catches bad launch configurations at once. Set
// FLASHGRAD_SYNC_LAUNCHES=1 in the environment to also synchronise and catch faults at the
// kernel that caused them (slow; for debugging).
#define FG_LAUNCH_CHECK()                                                   \
  do {                                                                      \
    cudaError_t fg_err_ = cudaGetLastError();                               \
    if (fg_err_ != cudaSuccess) ::fg::throw_cuda_error(fg_err_, "kernel launch", __FILE__, __LINE__); \
    if (::fg::sync_launches()) FG_CUDA_CHECK(cudaDeviceSynchronize());      \
  } while (0)

namespace fg {
inline bool sync_launches() {
  static const bool on = env_flag("FLASHGRAD_SYNC_LAUNCHES");
  return on;
}
}  // namespace fg
