// The caching CUDA allocator (see tensor/allocator.h for what its counters mean) and copies.
//
// Every kernel in flashgrad runs on the calling thread's default stream, and the GPU work comes
// from one thread, so a freed block can be handed to the next request at once: any later use
// is queued behind the work that last touched it.
//
// CUDA graphs (tensor/graph.h). The work a graph captures reads and writes the addresses it
// had at capture, on every replay. So while a graph is being captured, the blocks its
// operations allocate come from a private pool of that graph, and return to it when freed:
// they are reused within the same graph (in its own stream order, which is safe) but never
// handed to work outside it, which a replay could overwrite. The pool's cached blocks go back
// to the common cache when the graph is destroyed; blocks a caller still holds (the graph's
// outputs) return to the common cache when they are freed after that.
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

// The pool the calling thread's allocations come from: 0 the common one, else a graph's.
thread_local int tl_pool = 0;

struct CachingAllocator {
  std::mutex mu;
  MemoryStats s;
  using FreeList = std::multimap<size_t, void*>;  // block size -> pointer
  FreeList free_blocks;                           // the common pool's cached blocks
  std::unordered_map<int, FreeList> pools;        // graph pools' cached blocks, by id
  int next_pool = 1;
  struct Live {
    size_t size;
    int pool;
  };
  std::unordered_map<void*, Live> live_blocks;  // pointer -> block size and pool

  // The free list of pool `id` (the common one for 0 or a pool that no longer exists).
  FreeList& free_list(int id) {
    if (id == 0) return free_blocks;
    auto it = pools.find(id);
    return it == pools.end() ? free_blocks : it->second;
  }

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
    FreeList& list = free_list(tl_pool);
    auto it = list.lower_bound(bs);
    if (it != list.end() && it->first <= 2 * bs) {
      bs = it->first;
      p = it->second;
      list.erase(it);
    } else {
      cudaError_t e = cudaMalloc(&p, bs);
      if (e == cudaErrorMemoryAllocation && tl_pool == 0) {  // (no cudaFree inside a capture)
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
    live_blocks[p] = Live{bs, tl_pool};
    s.allocated += nbytes;
    s.peak_allocated = std::max(s.peak_allocated, s.allocated);
    s.num_allocs++;
    return p;
  }

  void free(void* p, size_t nbytes) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = live_blocks.find(p);
    if (it == live_blocks.end()) return;  // not ours; never happens for Storage
    free_list(it->second.pool).emplace(it->second.size, p);
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

int graph_pool_create() {
  auto& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  const int id = a.next_pool++;
  a.pools[id];
  return id;
}

void graph_pool_release(int id) {
  auto& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.pools.find(id);
  if (it == a.pools.end()) return;
  a.free_blocks.insert(it->second.begin(), it->second.end());
  a.pools.erase(it);
}

namespace {
// capturing: the failure ended a capture, where the usual cause is work that waits for the
// host.
void graph_check(cudaError_t e, const char* what, bool capturing = false) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // capture errors are not sticky; leave the runtime clean
  throw Error(str("CUDA graph: ", what, " failed: ", cudaGetErrorString(e),
                  capturing ? ". Work that synchronises with the host (a copy to the host, a "
                              "check that reads a device value) cannot be captured; run it "
                              "outside the graph"
                            : ""));
}
}  // namespace

void graph_capture_begin(int pool) {
  FG_CHECK(tl_pool == 0, "CUDA graph: a capture is already running on this thread");
  // Relaxed: the allocator may still cudaMalloc a new block for the pool while capturing.
  graph_check(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeRelaxed),
              "cudaStreamBeginCapture");
  tl_pool = pool;
}

void* graph_capture_end(bool keep) {
  tl_pool = 0;
  cudaGraph_t graph = nullptr;
  const cudaError_t e = cudaStreamEndCapture(cudaStreamPerThread, &graph);
  if (!keep) {  // the capture was abandoned (an exception): discard what it recorded
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    return nullptr;
  }
  graph_check(e, "capturing (cudaStreamEndCapture)", /*capturing=*/true);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  graph_check(ie, "cudaGraphInstantiate");
  return exec;
}

void graph_launch(void* exec) {
  graph_check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), cudaStreamPerThread),
              "cudaGraphLaunch");
}

void graph_destroy(void* exec) {
  if (exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

bool capturing() {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(cudaStreamPerThread, &st) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return st != cudaStreamCaptureStatusNone;
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
