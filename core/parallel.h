// The one CPU parallel-for of flashgrad.
//
// parallel_for(n, cost_per_item, fn) calls fn(begin, end) over [0, n) in contiguous chunks,
// on several threads when the total work (n * cost_per_item, in rough "simple operations")
// pays for starting them. Every index lands in exactly one chunk and chunks never share an
// output, so results do not depend on the number of threads: the CPU kernels stay
// deterministic, which is what makes them the reference of the CUDA ones.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace fg {

// Work below which one more thread costs more than it saves (thread start is ~10-20 us).
constexpr int64_t kParallelGrain = int64_t(1) << 16;

inline int64_t cpu_thread_count() {
  static const int64_t n = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  return n;
}

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
  std::vector<std::thread> threads;
  for (int64_t begin = chunk; begin < n; begin += chunk) {
    const int64_t end = std::min(n, begin + chunk);
    threads.emplace_back([&fn, begin, end] { fn(begin, end); });
  }
  fn(int64_t(0), std::min(n, chunk));
  for (auto& t : threads) t.join();
}

}  // namespace fg
