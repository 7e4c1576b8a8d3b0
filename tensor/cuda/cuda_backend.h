// The CUDA side of the allocator and copies; only built with FLASHGRAD_WITH_CUDA.
#pragma once
#include <cstddef>

#include "tensor/allocator.h"

namespace fg::cuda_backend {
bool available();
void* alloc(size_t nbytes);
void free(void* p, size_t nbytes);
MemoryStats stats();
void reset_peak();
void empty_cache();
void copy(void* dst, bool dst_cuda, const void* src, bool src_cuda, size_t nbytes);
void synchronize();
}  // namespace fg::cuda_backend
