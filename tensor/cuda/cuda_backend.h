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
// CUDA graphs of tensor/graph.h. A pool is a private set of cached blocks: between
// graph_capture_begin(pool) and graph_capture_end the calling thread allocates from it, and
// its blocks return to it when freed; graph_pool_release gives its cached blocks back to the
// common cache. graph_capture_end(keep = true) instantiates what was captured on the calling
// thread's default stream (an executable graph, to launch and destroy); keep = false discards
// it (a capture abandoned by an exception). capturing(): whether that stream is capturing.
int graph_pool_create();
void graph_pool_release(int pool);
void graph_capture_begin(int pool);
void* graph_capture_end(bool keep);
void graph_launch(void* exec);
void graph_destroy(void* exec);
bool capturing();
void synchronize();
// Event pairs of tensor/phase_timer.h: begin records a start event for `phase` on the default
// stream and returns its slot; end records the slot's stop event; take waits for the last stop,
// adds each pair's elapsed milliseconds and count into ms[phase] and calls[phase], and frees
// the slots (the events are kept for reuse).
int phase_event_begin(int phase);
void phase_event_end(int slot);
void take_phase_events(double* ms, int64_t* calls, int num_phases);
}  // namespace fg::cuda_backend
