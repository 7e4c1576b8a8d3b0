// The phase timer of tensor/phase_timer.h: clock readings on the CPU, CUDA event pairs on the
// GPU (tensor/cuda/cuda_backend.cpp keeps the events).
#include "tensor/phase_timer.h"

#include <atomic>
#include <chrono>
#include <mutex>

#ifdef FLASHGRAD_WITH_CUDA
#include "tensor/cuda/cuda_backend.h"
#endif

namespace fg {

namespace {
std::atomic<bool> g_on{false};
std::mutex g_mu;
PhaseTimes g_cpu;  // CPU scopes add here directly

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void set_phase_timing(bool on) { g_on = on; }
bool phase_timing() { return g_on; }

PhaseTimes take_phase_times() {
  std::lock_guard<std::mutex> lock(g_mu);
  PhaseTimes t = g_cpu;
  g_cpu = PhaseTimes();
#ifdef FLASHGRAD_WITH_CUDA
  cuda_backend::take_phase_events(t.ms, t.calls, kNumPhases);
#endif
  return t;
}

PhaseScope::PhaseScope(Phase phase, Device device) : phase_(phase) {
  if (!g_on) return;
  active_ = true;
  cuda_ = device.is_cuda();
#ifdef FLASHGRAD_WITH_CUDA
  if (cuda_) {
    slot_ = cuda_backend::phase_event_begin(int(phase));
    return;
  }
#endif
  start_s_ = now_s();
}

PhaseScope::~PhaseScope() {
  if (!active_) return;
#ifdef FLASHGRAD_WITH_CUDA
  if (cuda_) {
    cuda_backend::phase_event_end(slot_);
    return;
  }
#endif
  const double ms = 1e3 * (now_s() - start_s_);
  std::lock_guard<std::mutex> lock(g_mu);
  g_cpu.ms[int(phase_)] += ms;
  g_cpu.calls[int(phase_)]++;
}

}  // namespace fg
