// Picking a kernel by device: the one place where the op layer chooses between the CPU
// kernels (fg::cpu, the reference) and the CUDA kernels (fg::cuda) of kernels/kernels.h.
#pragma once
#include "kernels/kernels.h"

namespace fg {
// Throws the "built without CUDA" error; used by FG_KERNEL in CPU-only builds.
[[noreturn]] void no_cuda_kernel(const char* name);
}  // namespace fg

// FG_KERNEL(device, name) is the kernel `name` for `device`, to be called with its arguments:
//   FG_KERNEL(x.device(), unary)(op, x.dtype(), n, idx, x.data_ptr(), y.data_ptr());
// In a CPU-only build the CUDA kernels do not exist, and asking for one throws.
#ifdef FLASHGRAD_WITH_CUDA
#define FG_KERNEL(DEVICE, NAME) ((DEVICE).is_cuda() ? &::fg::cuda::NAME : &::fg::cpu::NAME)
#else
#define FG_KERNEL(DEVICE, NAME) \
  ((DEVICE).is_cuda() ? (::fg::no_cuda_kernel(#NAME), &::fg::cpu::NAME) : &::fg::cpu::NAME)
#endif
// FG_CALL_KERNEL(device, name, args...) calls it: FG_KERNEL(device, name)(args...).
#define FG_CALL_KERNEL(DEVICE, NAME, ...) FG_KERNEL(DEVICE, NAME)(__VA_ARGS__)
