// The allocators' counters are exact: memory experiments depend on them.
#include "support/test_util.h"

using namespace fg;

FG_TEST_ALL_DEVICES("allocator counts requested bytes exactly", "[allocator]") {
  synchronize(device);
  MemoryStats s0 = memory_stats(device);
  reset_peak_memory(device);
  {
    Tensor a = empty({1000}, TensorOptions(DType::f32).device(device));  // 4000 B
    Tensor b = empty({3, 7}, TensorOptions(DType::f64).device(device));  // 168 B
    MemoryStats s1 = memory_stats(device);
    CHECK(s1.allocated - s0.allocated == 4168);
    CHECK(s1.peak_allocated >= s0.allocated + 4168);
    CHECK(s1.reserved >= s1.allocated);
    Tensor v = a.view({10, 100});  // a view allocates nothing
    CHECK(memory_stats(device).allocated == s1.allocated);
  }
  MemoryStats s2 = memory_stats(device);
  CHECK(s2.allocated == s0.allocated);
  CHECK(s2.peak_allocated == s0.allocated + 4168);
  reset_peak_memory(device);
  CHECK(memory_stats(device).peak_allocated == s0.allocated);
  CHECK(s2.device_total > 0);
  CHECK(s2.device_free <= s2.device_total);
}

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("the CUDA allocator caches freed blocks and empties on request", "[allocator][cuda]") {
  Device d = Device::cuda();
  empty_cache(d);
  MemoryStats s0 = memory_stats(d);
  { Tensor a = empty({1 << 20}, TensorOptions().device(d)); }  // 4 MiB, freed into the cache
  MemoryStats s1 = memory_stats(d);
  CHECK(s1.allocated == s0.allocated);
  CHECK(s1.reserved == s0.reserved + (size_t(4) << 20));
  { Tensor b = empty({1 << 20}, TensorOptions().device(d)); }  // served from the cache
  MemoryStats s2 = memory_stats(d);
  CHECK(s2.num_device_allocs == s1.num_device_allocs);
  empty_cache(d);
  CHECK(memory_stats(d).reserved == s0.reserved);
}

TEST_CASE("CUDA out of memory is a clear error", "[allocator][cuda][oom]") {
  Device d = Device::cuda();
  MemoryStats before = memory_stats(d);
  REQUIRE_THROWS_AS(empty({int64_t(1) << 42}, TensorOptions().device(d)), OutOfMemoryError);
  try {
    empty({int64_t(1) << 42}, TensorOptions().device(d));
  } catch (const OutOfMemoryError& e) {
    std::string m = e.what();
    CHECK_THAT(m, Catch::Contains("16.00 TiB"));
    CHECK_THAT(m, Catch::Contains("allocated"));
  }
  CHECK(memory_stats(d).allocated == before.allocated);
  // The device still works afterwards.
  CHECK(ones({4}, TensorOptions().device(d)).sum().item() == 4.0);
}
#endif

TEST_CASE("asking for CUDA without it is a clear error", "[allocator]") {
  if (cuda_available()) return;
  // Named as a missing device (or, in a build without CUDA, as that) with the way out, and not
  // as an out-of-memory.
#ifdef FLASHGRAD_WITH_CUDA
  REQUIRE_THROWS_WITH(zeros({2}, TensorOptions().device(Device::cuda())),
                      Catch::Contains("no usable CUDA device") && Catch::Contains("--device cpu"));
#else
  REQUIRE_THROWS_WITH(zeros({2}, TensorOptions().device(Device::cuda())),
                      Catch::Contains("built without CUDA") && Catch::Contains("--device cpu"));
#endif
  bool oom = false;
  try {
    zeros({2}, TensorOptions().device(Device::cuda()));
  } catch (const OutOfMemoryError&) {
    oom = true;
  } catch (const Error&) {
  }
  CHECK_FALSE(oom);
  REQUIRE_THROWS_WITH(device_from_string("cuda"), Catch::Contains("--device cpu"));
  REQUIRE_THROWS_WITH(device_from_string("tpu"), Catch::Contains("unknown device"));
  CHECK(device_from_string("auto").is_cpu());
}
