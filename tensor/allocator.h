// Memory for tensors: a counting CPU allocator and a caching CUDA allocator, with exact stats.
//
// The memory experiments (`flashgrad memprofile`) read these counters, so they are exact:
//   allocated       bytes tensors have asked for and not yet released (the requested sizes)
//   peak_allocated  the maximum of `allocated` since start or the last reset_peak_memory()
//   reserved        bytes held from the device (cudaMalloc'ed blocks, in use or cached)
//   peak_reserved   the maximum of `reserved` since start or the last reset_peak_memory()
// The CUDA allocator rounds each request up to a block (512 B under 1 MiB, 2 MiB multiples
// above) and keeps freed blocks for reuse, as PyTorch's and MLX's caching allocators do;
// empty_cache() returns the unused blocks to the device. The CPU allocator caches nothing, so
// its `reserved` equals its `allocated` rounded to 64-byte alignment.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/device.h"

namespace fg {

struct MemoryStats {
  size_t allocated = 0;
  size_t peak_allocated = 0;
  size_t reserved = 0;
  size_t peak_reserved = 0;
  uint64_t num_allocs = 0;     // allocations served since start
  uint64_t num_device_allocs = 0;  // cudaMalloc calls (CUDA) / malloc calls (CPU)
  size_t device_free = 0;      // the device's own free bytes (cudaMemGetInfo); CPU: MemAvailable
  size_t device_total = 0;     // the device's total bytes; CPU: MemTotal
};

MemoryStats memory_stats(Device d);
void reset_peak_memory(Device d);
void empty_cache(Device d);
// The same counters under MLX's names.
inline size_t get_active_memory(Device d) { return memory_stats(d).allocated; }
inline size_t get_peak_memory(Device d) { return memory_stats(d).peak_allocated; }
inline size_t get_cache_memory(Device d) {
  auto s = memory_stats(d);
  return s.reserved - s.allocated;
}

// Raw allocation. Throws OutOfMemoryError naming the request and the counters.
void* raw_alloc(Device d, size_t nbytes);
void raw_free(Device d, void* p, size_t nbytes);

// A block of memory owned by one or more tensors (views share it).
class Storage {
 public:
  Storage(Device d, size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

// Copies between any two devices; both ranges are contiguous bytes.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
// Waits for all queued device work (no-op on CPU).
void synchronize(Device d);

// Formats a byte count as "1.50 GiB" etc.
std::string format_bytes(size_t n);

}  // namespace fg
