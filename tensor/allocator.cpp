// The CPU allocator, the device-independent front of the allocators, and Storage.
#include "tensor/allocator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <fstream>
#include <mutex>
#include <string>

#include "core/error.h"
#ifdef FLASHGRAD_WITH_CUDA
#include "tensor/cuda/cuda_backend.h"
#endif

namespace fg {

namespace {

constexpr size_t kCpuAlignment = 64;

struct CpuAllocator {
  std::mutex mu;
  MemoryStats s;

  static size_t rounded(size_t n) { return (n + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment; }

  void* alloc(size_t nbytes) {
    size_t r = rounded(nbytes == 0 ? 1 : nbytes);
    void* p = std::aligned_alloc(kCpuAlignment, r);
    std::lock_guard<std::mutex> lock(mu);
    if (!p)
      throw OutOfMemoryError(str("out of CPU memory: could not allocate ", format_bytes(nbytes),
                                 " (flashgrad holds ", format_bytes(s.allocated),
                                 ", peak ", format_bytes(s.peak_allocated),
                                 "); use smaller sizes"));
    s.allocated += nbytes;
    s.reserved += r;
    s.peak_allocated = std::max(s.peak_allocated, s.allocated);
    s.peak_reserved = std::max(s.peak_reserved, s.reserved);
    s.num_allocs++;
    s.num_device_allocs++;
    return p;
  }
  void free(void* p, size_t nbytes) {
    std::free(p);
    std::lock_guard<std::mutex> lock(mu);
    s.allocated -= nbytes;
    s.reserved -= rounded(nbytes == 0 ? 1 : nbytes);
  }
};

CpuAllocator& cpu_allocator() {
  static CpuAllocator* a = [] {
#ifdef __GLIBC__
    // glibc serves blocks from 128 KiB up (a training step's activations) with fresh mmaps and
    // unmaps them on free, so every step pays page faults on new pages again (a tenth of a
    // CPU step, measured). Blocks up to 64 MiB come from the heap instead, and freed memory up
    // to 256 MiB stays mapped for the next step. (glibc raises its threshold by itself after
    // large blocks are freed, which is why a run that first loads a big file did not show it.)
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
    return new CpuAllocator();  // never destroyed: tensors may outlive statics
  }();
  return *a;
}

// Reads a "Key:  123 kB" line from /proc/meminfo.
size_t meminfo_bytes(const char* key) {
  std::ifstream f("/proc/meminfo");
  std::string k;
  size_t v = 0;
  std::string unit;
  while (f >> k >> v >> unit)
    if (k == key) return v * 1024;
  return 0;
}

#ifndef FLASHGRAD_WITH_CUDA
[[noreturn]] void no_cuda() {
  throw Error(
      "this flashgrad was built without CUDA (FLASHGRAD_CUDA=OFF or no toolkit found); "
      "use the CPU (--device cpu), or rebuild with the CUDA toolkit installed");
}
#endif

}  // namespace

std::string format_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%zu B", n);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

bool cuda_available() {
#ifdef FLASHGRAD_WITH_CUDA
  return cuda_backend::available();
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef FLASHGRAD_WITH_CUDA
  return cuda_backend::device_count();
#else
  return 0;
#endif
}

Device device_from_string(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  if (s == "cuda" || s == "cuda:0") {
    if (!cuda_available())
      throw Error(str("device '", s, "' was asked for but no CUDA device is available",
#ifdef FLASHGRAD_WITH_CUDA
                      " (no GPU found or the driver is missing)",
#else
                      " (this flashgrad was built without CUDA)",
#endif
                      "; use --device cpu or auto"));
    return Device::cuda(0);
  }
  throw Error(str("unknown device '", s, "': use cpu, cuda or auto"));
}

MemoryStats memory_stats(Device d) {
  if (d.is_cpu()) {
    auto& a = cpu_allocator();
    MemoryStats s;
    {
      std::lock_guard<std::mutex> lock(a.mu);
      s = a.s;
    }
    s.device_free = meminfo_bytes("MemAvailable:");
    s.device_total = meminfo_bytes("MemTotal:");
    return s;
  }
#ifdef FLASHGRAD_WITH_CUDA
  return cuda_backend::stats();
#else
  no_cuda();
#endif
}

void reset_peak_memory(Device d) {
  if (d.is_cpu()) {
    auto& a = cpu_allocator();
    std::lock_guard<std::mutex> lock(a.mu);
    a.s.peak_allocated = a.s.allocated;
    a.s.peak_reserved = a.s.reserved;
    return;
  }
#ifdef FLASHGRAD_WITH_CUDA
  cuda_backend::reset_peak();
#else
  no_cuda();
#endif
}

void empty_cache(Device d) {
  if (d.is_cpu()) return;  // the CPU allocator caches nothing
#ifdef FLASHGRAD_WITH_CUDA
  cuda_backend::empty_cache();
#else
  no_cuda();
#endif
}

void* raw_alloc(Device d, size_t nbytes) {
  if (d.is_cpu()) return cpu_allocator().alloc(nbytes);
#ifdef FLASHGRAD_WITH_CUDA
  return cuda_backend::alloc(nbytes);
#else
  no_cuda();
#endif
}

void raw_free(Device d, void* p, size_t nbytes) {
  if (!p) return;
  if (d.is_cpu()) return cpu_allocator().free(p, nbytes);
#ifdef FLASHGRAD_WITH_CUDA
  cuda_backend::free(p, nbytes);
#else
  no_cuda();
#endif
}

Storage::Storage(Device d, size_t nbytes) : nbytes_(nbytes), device_(d) {
  data_ = raw_alloc(d, nbytes);
}
Storage::~Storage() { raw_free(device_, data_, nbytes_); }

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#ifdef FLASHGRAD_WITH_CUDA
  cuda_backend::copy(dst, dst_device.is_cuda(), src, src_device.is_cuda(), nbytes);
#else
  no_cuda();
#endif
}

void synchronize(Device d) {
  if (d.is_cpu()) return;
#ifdef FLASHGRAD_WITH_CUDA
  cuda_backend::synchronize();
#endif
}

}  // namespace fg
