// Gradient buckets for data-parallel training: the parameters grouped, in the order the
// backward pass produces their gradients, into runs of about `bucket_bytes`, each all-reduced
// as one flat buffer as soon as its last gradient is ready (PyTorch DDP's and llm.c's scheme).
//
// The planner only decides the grouping and the layout of each bucket's flat buffer; it knows
// nothing about devices or communicators, so it is tested on the CPU.
#pragma once
#include <cstdint>
#include <vector>

namespace fg::train {

struct BucketEntry {
  int64_t param = 0;   // index into the sizes given to plan_buckets
  int64_t offset = 0;  // element offset in the bucket's flat buffer
  int64_t numel = 0;
};

struct Bucket {
  std::vector<BucketEntry> entries;  // in gradient order
  int64_t numel = 0;                 // the flat buffer's length, padding included
};

// numels[i]: elements of parameter i; order: the parameter indices in the order their
// gradients become ready (usually the reverse of the forward's registration order);
// element_bytes: bytes per gradient element in the buffer (4 for an fp32 reduction, 2 for
// bf16). A bucket is closed once it holds at least bucket_bytes, so a parameter larger than
// that gets a bucket of its own and no bucket is empty. Each entry starts at a multiple of
// `align_elems` elements (aligned loads and stores in the pack/unpack kernels). Every
// parameter of `order` appears exactly once. Throws on a bad order (an index out of range or
// repeated), a negative size, or a non-positive bucket size or alignment, naming it.
std::vector<Bucket> plan_buckets(const std::vector<int64_t>& numels,
                                 const std::vector<int64_t>& order, int64_t bucket_bytes,
                                 int64_t element_bytes, int64_t align_elems = 64);

// The partition of ZeRO stage 1 (`train --zero 1`): the rank that owns, that is updates and
// keeps the optimizer state of, each parameter. Whole parameters, balanced by elements: the
// largest first, each to the rank holding the fewest elements so far (ties: the lowest rank).
// A function of numels and world alone, so every rank computes the same partition. Throws on
// world < 1 or a negative size.
std::vector<int64_t> assign_owners(const std::vector<int64_t>& numels, int64_t world);

}  // namespace fg::train
