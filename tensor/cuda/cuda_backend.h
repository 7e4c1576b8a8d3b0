// The CUDA side of the allocator and copies; only built with FLASHGRAD_WITH_CUDA.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tensor/allocator.h"

namespace fg::cuda_backend {
bool available();
int device_count();
void* alloc(size_t nbytes);
void free(void* p, size_t nbytes);
MemoryStats stats();
void reset_peak();
void empty_cache();
void copy(void* dst, bool dst_cuda, const void* src, bool src_cuda, size_t nbytes);
void synchronize();
// Event pairs of tensor/phase_timer.h: begin records a start event for `phase` on the default
// stream and returns its slot; end records the slot's stop event; take waits for the last stop,
// adds each pair's elapsed milliseconds and count into ms[phase] and calls[phase], and frees
// the slots (the events are kept for reuse).
int phase_event_begin(int phase);
void phase_event_end(int slot);
void take_phase_events(double* ms, int64_t* calls, int num_phases);
}  // namespace fg::cuda_backend
