// GPU timing shared by the benchmarks (CUDA builds only): batches of back-to-back calls between
// two CUDA events with no synchronisation inside a batch, so host dispatch overlaps the GPU's
// work as in a training loop (bench/compare_sdpa.py times PyTorch the same way), and the
// median over the batches of each batch's mean per call.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "core/cuda_check.h"

namespace fg::cli {

// Two events, made with the object and destroyed with it.
class EventTimer {
 public:
  EventTimer() {
    FG_CUDA_CHECK(cudaEventCreate(&e0_));
    FG_CUDA_CHECK(cudaEventCreate(&e1_));
  }
  ~EventTimer() {
    cudaEventDestroy(e0_);
    cudaEventDestroy(e1_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Milliseconds per call over `iters` back-to-back calls of f().
  template <typename F>
  double batch_ms(F&& f, int iters) {
    FG_CUDA_CHECK(cudaEventRecord(e0_));
    for (int i = 0; i < iters; ++i) f();
    FG_CUDA_CHECK(cudaEventRecord(e1_));
    FG_CUDA_CHECK(cudaEventSynchronize(e1_));
    float ms = 0;
    FG_CUDA_CHECK(cudaEventElapsedTime(&ms, e0_, e1_));
    return double(ms) / iters;
  }

 private:
  cudaEvent_t e0_ = nullptr, e1_ = nullptr;
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Milliseconds per call of f(): `warmup` untimed calls, one timed call to size the batches,
// then `batches` batches of as many calls as fill `seconds` together (2 to max_iters each);
// the median of the batches' means.
template <typename F>
double time_ms(EventTimer& timer, F&& f, int warmup, int batches, double seconds, int max_iters) {
  for (int i = 0; i < warmup; ++i) f();
  const double one = timer.batch_ms(f, 1);
  const int iters = int(std::clamp(seconds * 1000.0 / batches / std::max(one, 1e-3), 2.0,
                                   double(max_iters)));
  std::vector<double> t;
  for (int i = 0; i < batches; ++i) t.push_back(timer.batch_ms(f, iters));
  return median(t);
}

}  // namespace fg::cli
