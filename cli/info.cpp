// `flashgrad info`: the version and the build (commit, build type, CUDA architectures, BLAS),
// the machine (CPU threads and memory, each GPU), and which attention kernels each dtype and
// head dim would take on this machine's first GPU.
//
// The build facts come from the header cli/build_info.cmake generates at configure time; a
// build without it prints "unknown" for them.
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "core/parallel.h"
#include "kernels/attention/attention.h"
#include "tensor/tensor.h"
#ifdef FLASHGRAD_WITH_CUDA
#include "core/cuda_device.h"
#endif
#if __has_include("flashgrad_build_info.h")
#include "flashgrad_build_info.h"
#endif

#ifndef FLASHGRAD_GIT_COMMIT
#define FLASHGRAD_GIT_COMMIT "unknown"
#endif
#ifndef FLASHGRAD_BUILD_TYPE
#define FLASHGRAD_BUILD_TYPE "unknown"
#endif
#ifndef FLASHGRAD_CUDA_ARCHITECTURES
#define FLASHGRAD_CUDA_ARCHITECTURES "unknown"
#endif
#ifndef FLASHGRAD_BLAS_LIBRARIES
#define FLASHGRAD_BLAS_LIBRARIES "library unknown"
#endif

namespace fg::cli {

namespace {

#ifdef FLASHGRAD_WITH_CUDA
// The CUDA attention kernels (forward, backward) that a call with `dtype` and head dim D takes
// on the current device, as the attention dispatch decides it. The one place in the command
// that asks kernels/attention for its choice.
std::pair<std::string, std::string> attention_kernels(DType dtype, int64_t D) {
  if (!attention_cuda_supports_head_dim(D, dtype)) return {"unsupported", "unsupported"};
  AttentionParams p;
  p.B = 1;
  p.Nq = p.Nk = 1024;
  p.Hq = p.Hkv = 1;
  p.D = D;
  p.dtype = dtype;
  set_contiguous_strides(p);
  return {flash_attention_forward_kernel(p), flash_attention_backward_kernel(p)};
}

// One line per GPU; the attention table of the first one.
void print_gpus() {
  std::vector<const CudaDeviceInfo*> gpus;
  if (cuda_available()) {
    for (int i = 0; i < 64; ++i) {
      try {
        gpus.push_back(&cuda_device_info(i));
      } catch (const Error&) {
        break;  // no device i
      }
    }
  }
  if (gpus.empty()) {
    std::cout << "GPUs: none found (no device, or no driver)\n"
              << "attention: the CPU flash path for every dtype and head dim\n";
    return;
  }
  std::cout << "GPUs: " << gpus.size() << "\n";
  for (const CudaDeviceInfo* g : gpus)
    std::cout << "  cuda:" << g->index << ": " << g->name << ", " << format_bytes(g->total_memory)
              << ", compute capability " << g->major << "." << g->minor << ", " << g->sm_count
              << " SMs\n";
  std::cout << "attention kernels on cuda:0, forward / backward:\n";
  const std::vector<int64_t> dims = {32, 64, 96, 128, 256};
  std::printf("  %-6s", "dtype");
  for (int64_t D : dims) std::printf("  %-26s", ("D " + std::to_string(D)).c_str());
  std::printf("\n");
  for (DType dt : {DType::bf16, DType::f16, DType::f32, DType::f64}) {
    std::printf("  %-6s", dtype_name(dt));
    for (int64_t D : dims) {
      const auto [fwd, bwd] = attention_kernels(dt, D);
      std::printf("  %-26s", (fwd + " / " + bwd).c_str());
    }
    std::printf("\n");
  }
  std::fflush(stdout);
}
#endif

void print_info() {
  std::cout << "flashgrad 0.1.0\n"
            << "commit: " << FLASHGRAD_GIT_COMMIT << "\n"
            << "build type: " << FLASHGRAD_BUILD_TYPE << "\n";
#ifdef FLASHGRAD_WITH_CUDA
  std::cout << "CUDA: built, architectures " << FLASHGRAD_CUDA_ARCHITECTURES << "\n";
#else
  std::cout << "CUDA: not built (a CPU-only build)\n";
#endif
#ifdef FLASHGRAD_HAVE_CBLAS
  std::cout << "BLAS: cblas (" << FLASHGRAD_BLAS_LIBRARIES << ")\n";
#else
  std::cout << "BLAS: none (CPU matrix products use built-in loops)\n";
#endif
  std::cout << "CPU: " << cpu_thread_count() << " threads, "
            << format_bytes(memory_stats(Device::cpu()).device_total) << " RAM\n";
#ifdef FLASHGRAD_WITH_CUDA
  print_gpus();
#else
  std::cout << "GPUs: not used (a CPU-only build)\n"
            << "attention: the CPU flash path for every dtype and head dim\n";
#endif
}

}  // namespace

void register_info(CLI::App& app) {
  auto* info = app.add_subcommand("info", "print the build, the devices and the attention kernels");
  info->callback([] { print_info(); });
}

}  // namespace fg::cli
