// The one CPU parallel-for of flashgrad.
//
// parallel_for(n, cost_per_item, fn) calls fn(begin, end) over [0, n) in contiguous chunks,
// on several threads when the total work (n * cost_per_item, in rough "simple operations")
// pays for waking them. Every index lands in exactly one chunk and chunks never share an
// output, so results do not depend on the number of threads: the CPU kernels stay
// deterministic, which is what makes them the reference of the CUDA ones.
//
// The threads are a pool started on first use and kept for the life of the process (waking a
// sleeping thread costs a few microseconds; creating one, tens): a training step runs hundreds
// of these loops. A parallel_for called from inside another one (or while another thread of
// the process holds the pool) runs its chunks on the calling thread, in the same chunks.
// FLASHGRAD_CPU_THREADS=N caps the threads (1 = everything on the calling thread).
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>

namespace fg {

// Work below which one more thread costs more than it saves.
constexpr int64_t kParallelGrain = int64_t(1) << 16;

// The threads parallel_for may use: hardware_concurrency(), or FLASHGRAD_CPU_THREADS.
int64_t cpu_thread_count();

// Runs task(0) .. task(n - 1), task(0) on the calling thread and the others on the pool's
// threads (or all on the calling thread when the pool is busy or n == 1); returns when all
// are done. An exception thrown by a task is rethrown here (the first one).
void parallel_run(int64_t n, const std::function<void(int64_t)>& task);

template <typename F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& fn) {
  if (n <= 0) return;
  const int64_t work = n * std::max<int64_t>(cost_per_item, 1);
  const int64_t nthreads = std::min({cpu_thread_count(), n, std::max<int64_t>(work / kParallelGrain, 1)});
  if (nthreads <= 1) {
    fn(int64_t(0), n);
    return;
  }
  const int64_t chunk = (n + nthreads - 1) / nthreads;
  const int64_t chunks = (n + chunk - 1) / chunk;
  parallel_run(chunks, [&](int64_t c) { fn(c * chunk, std::min(n, (c + 1) * chunk)); });
}

}  // namespace fg
