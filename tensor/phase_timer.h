// Where a step's time goes: the time spent in matrix products and in attention, measured around
// the raw ops that run them, for `flashgrad bench train`.
//
// Off by default: a PhaseScope then costs one branch. When on, each scope on a CUDA tensor
// records a pair of CUDA events on the stream around its kernels (their GPU time, host-side
// overhead excluded), and on the CPU reads the clock around the call (CPU kernels are
// synchronous). take_phase_times() waits for the device, adds the elapsed times up and starts
// over. Scopes do not nest: ops::matmul and the attention ops open one each and call no other
// scoped op inside. Everything else a step does is the step time minus these.
#pragma once
#include <cstdint>

#include "tensor/device.h"

namespace fg {

enum class Phase : int { matmul = 0, attention = 1 };
constexpr int kNumPhases = 2;

struct PhaseTimes {
  double ms[kNumPhases] = {0, 0};
  int64_t calls[kNumPhases] = {0, 0};
};

void set_phase_timing(bool on);
bool phase_timing();
// The times recorded since the last call (waits for the device's queued work first).
PhaseTimes take_phase_times();

class PhaseScope {
 public:
  PhaseScope(Phase phase, Device device);
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  Phase phase_;
  bool active_ = false, cuda_ = false;
  int slot_ = -1;
  double start_s_ = 0;
};

}  // namespace fg
