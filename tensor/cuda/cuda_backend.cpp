// The caching CUDA allocator (see tensor/allocator.h for what its counters mean) and copies.
//
// Every kernel in flashgrad runs on the default stream, so a freed block can be handed to the
// next request at once: any later use is queued behind the work that last touched it.
#include "tensor/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/cuda_check.h"

namespace fg::cuda_backend {

namespace {

constexpr size_t kSmallBlock = 512;
constexpr size_t kLargeThreshold = size_t(1) << 20;
constexpr size_t kLargeBlock = size_t(2) << 20;

size_t block_size(size_t n) {
  if (n == 0) n = 1;
  if (n < kLargeThreshold) return (n + kSmallBlock - 1) / kSmallBlock * kSmallBlock;
  return (n + kLargeBlock - 1) / kLargeBlock * kLargeBlock;
}

struct CachingAllocator {
  std::mutex mu;
  MemoryStats s;
  std::multimap<size_t, void*> free_blocks;      // block size -> pointer
  std::unordered_map<void*, size_t> live_blocks;  // pointer -> block size

  void release_cached_locked() {
    for (auto& kv : free_blocks) {
      cudaFree(kv.second);
      s.reserved -= kv.first;
    }
    free_blocks.clear();
  }

  void* alloc(size_t nbytes) {
    std::lock_guard<std::mutex> lock(mu);
    size_t bs = block_size(nbytes);
    void* p = nullptr;
    // Reuse a cached block of the same size class, at most twice as large as needed.
    auto it = free_blocks.lower_bound(bs);
    if (it != free_blocks.end() && it->first <= 2 * bs) {
      bs = it->first;
      p = it->second;
      free_blocks.erase(it);
    } else {
      cudaError_t e = cudaMalloc(&p, bs);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear the sticky-free error state
        release_cached_locked();
        e = cudaMalloc(&p, bs);
      }
      if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw OutOfMemoryError(str(
            "CUDA out of memory: tried to allocate ", format_bytes(nbytes), " (block ",
            format_bytes(bs), "); flashgrad has ", format_bytes(s.allocated), " allocated (peak ",
            format_bytes(s.peak_allocated), "), ", format_bytes(s.reserved),
            " reserved; the device has ", format_bytes(free_b), " free of ", format_bytes(total_b),
            " (", cudaGetErrorString(e), "). Use a smaller batch or sequence length."));
      }
      s.reserved += bs;
      s.num_device_allocs++;
      s.peak_reserved = std::max(s.peak_reserved, s.reserved);
    }
    live_blocks[p] = bs;
    s.allocated += nbytes;
    s.peak_allocated = std::max(s.peak_allocated, s.allocated);
    s.num_allocs++;
    return p;
  }

  void free(void* p, size_t nbytes) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = live_blocks.find(p);
    if (it == live_blocks.end()) return;  // not ours; never happens for Storage
    free_blocks.emplace(it->second, p);
    live_blocks.erase(it);
    s.allocated -= nbytes;
  }
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();  // outlives every static tensor
  return *a;
}

}  // namespace

namespace {
// Why there is no CUDA device ("" when there is one), asked once.
const std::string& unavailable_reason() {
  static const std::string reason = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      return std::string(cudaGetErrorString(e));
    }
    return n > 0 ? std::string() : std::string("the driver reports no device");
  }();
  return reason;
}
}  // namespace

bool available() { return unavailable_reason().empty(); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void* alloc(size_t nbytes) {
  // Without a device every cudaMalloc fails; say so, rather than report an out-of-memory.
  if (!available())
    throw Error(str("no usable CUDA device for a tensor of ", format_bytes(nbytes), " (",
                    unavailable_reason(), "); check the GPU and its driver with nvidia-smi, or "
                    "run on the CPU (--device cpu)"));
  return allocator().alloc(nbytes);
}
void free(void* p, size_t nbytes) { allocator().free(p, nbytes); }

MemoryStats stats() {
  auto& a = allocator();
  MemoryStats s;
  {
    std::lock_guard<std::mutex> lock(a.mu);
    s = a.s;
  }
  FG_CUDA_CHECK(cudaMemGetInfo(&s.device_free, &s.device_total));
  return s;
}

void reset_peak() {
  auto& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  a.s.peak_allocated = a.s.allocated;
  a.s.peak_reserved = a.s.reserved;
}

void empty_cache() {
  auto& a = allocator();
  FG_CUDA_CHECK(cudaDeviceSynchronize());
  std::lock_guard<std::mutex> lock(a.mu);
  a.release_cached_locked();
}

void copy(void* dst, bool dst_cuda, const void* src, bool src_cuda, size_t nbytes) {
  cudaMemcpyKind kind = dst_cuda ? (src_cuda ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                 : (src_cuda ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  FG_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, kind));
}

void synchronize() { FG_CUDA_CHECK(cudaDeviceSynchronize()); }

namespace {
struct PhaseEvents {
  std::mutex mu;
  struct Slot {
    cudaEvent_t start = nullptr, stop = nullptr;
    int phase = 0;
  };
  std::vector<Slot> slots;  // [0, used) are this round's pairs; the rest wait for reuse
  size_t used = 0;
};
PhaseEvents& phase_events() {
  static PhaseEvents* e = new PhaseEvents();  // never destroyed: events outlive static teardown
  return *e;
}
}  // namespace

int phase_event_begin(int phase) {
  auto& e = phase_events();
  std::lock_guard<std::mutex> lock(e.mu);
  if (e.used == e.slots.size()) {
    PhaseEvents::Slot s;
    FG_CUDA_CHECK(cudaEventCreate(&s.start));
    FG_CUDA_CHECK(cudaEventCreate(&s.stop));
    e.slots.push_back(s);
  }
  PhaseEvents::Slot& s = e.slots[e.used];
  s.phase = phase;
  FG_CUDA_CHECK(cudaEventRecord(s.start, 0));
  return int(e.used++);
}

void phase_event_end(int slot) {
  auto& e = phase_events();
  std::lock_guard<std::mutex> lock(e.mu);
  FG_CUDA_CHECK(cudaEventRecord(e.slots[size_t(slot)].stop, 0));
}

void take_phase_events(double* ms, int64_t* calls, int num_phases) {
  auto& e = phase_events();
  std::lock_guard<std::mutex> lock(e.mu);
  if (e.used == 0) return;
  FG_CUDA_CHECK(cudaEventSynchronize(e.slots[e.used - 1].stop));
  for (size_t i = 0; i < e.used; ++i) {
    float t = 0;
    FG_CUDA_CHECK(cudaEventElapsedTime(&t, e.slots[i].start, e.slots[i].stop));
    if (e.slots[i].phase < num_phases) {
      ms[e.slots[i].phase] += double(t);
      calls[e.slots[i].phase]++;
    }
  }
  e.used = 0;
}

}  // namespace fg::cuda_backend
