// The bucket planner of data-parallel training (train/grad_buckets.h).
#include "train/grad_buckets.h"

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

}  // namespace fg::train
