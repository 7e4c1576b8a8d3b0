// The planners of data-parallel training: gradient buckets and ZeRO-1's partition
// (train/grad_buckets.h).
#include "train/grad_buckets.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "core/error.h"

namespace fg::train {

std::vector<Bucket> plan_buckets(const std::vector<int64_t>& numels,
                                 const std::vector<int64_t>& order, int64_t bucket_bytes,
                                 int64_t element_bytes, int64_t align_elems) {
  FG_CHECK(bucket_bytes > 0, "gradient buckets: the bucket size must be positive, got ",
           bucket_bytes, " bytes");
  FG_CHECK(element_bytes > 0 && align_elems > 0,
           "gradient buckets: element size and alignment must be positive, got ", element_bytes,
           " and ", align_elems);
  std::vector<bool> seen(numels.size(), false);
  std::vector<Bucket> buckets;
  Bucket cur;
  for (int64_t p : order) {
    FG_CHECK(p >= 0 && p < int64_t(numels.size()), "gradient buckets: parameter index ", p,
             " is out of range for ", numels.size(), " parameters");
    FG_CHECK(!seen[size_t(p)], "gradient buckets: parameter ", p,
             " appears twice in the gradient order");
    seen[size_t(p)] = true;
    const int64_t n = numels[size_t(p)];
    FG_CHECK(n >= 0, "gradient buckets: parameter ", p, " has a negative size ", n);
    const int64_t offset = (cur.numel + align_elems - 1) / align_elems * align_elems;
    cur.entries.push_back({p, offset, n});
    cur.numel = offset + n;
    if (cur.numel * element_bytes >= bucket_bytes) {
      buckets.push_back(std::move(cur));
      cur = Bucket();
    }
  }
  if (!cur.entries.empty()) buckets.push_back(std::move(cur));
  for (size_t i = 0; i < seen.size(); ++i)
    FG_CHECK(seen[i], "gradient buckets: parameter ", i, " is missing from the gradient order");
  return buckets;
}

std::vector<int64_t> assign_owners(const std::vector<int64_t>& numels, int64_t world) {
  FG_CHECK(world >= 1, "ZeRO partition: the world must hold at least one rank, got ", world);
  for (size_t i = 0; i < numels.size(); ++i)
    FG_CHECK(numels[i] >= 0, "ZeRO partition: parameter ", i, " has a negative size ", numels[i]);
  std::vector<int64_t> order(numels.size());
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return numels[size_t(a)] > numels[size_t(b)]; });
  std::vector<int64_t> load(size_t(world), 0), owner(numels.size(), 0);
  for (int64_t i : order) {
    const size_t r = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    owner[size_t(i)] = int64_t(r);
    load[r] += numels[size_t(i)];
  }
  return owner;
}

}  // namespace fg::train
