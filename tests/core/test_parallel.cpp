// parallel_for and its thread pool (core/parallel.h): every index exactly once, in chunks
// that do not depend on scheduling; nested loops and loops from several threads at once run
// (inline where the pool is busy) without deadlock; an exception in any chunk reaches the
// caller; the pool is reused across many calls.
#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/parallel.h"

using namespace fg;

TEST_CASE("parallel_for visits every index once", "[parallel]") {
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(1000), int64_t(1) << 20}) {
    std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
    for (auto& s : seen) s = 0;
    std::atomic<int64_t> chunks{0}, bad_bounds{0};
    parallel_for(n, 1, [&](int64_t b, int64_t e) {  // (no Catch2 assertions off the main thread)
      if (!(0 <= b && b < e && e <= n)) ++bad_bounds;
      ++chunks;
      for (int64_t i = b; i < e; ++i) ++seen[size_t(i)];
    });
    INFO("n = " << n);
    CHECK(bad_bounds == 0);
    int64_t wrong = 0;
    for (auto& s : seen) wrong += s != 1;
    CHECK(wrong == 0);
    CHECK(chunks <= cpu_thread_count());
  }
}

TEST_CASE("parallel_for: small work stays on the calling thread", "[parallel]") {
  const std::thread::id me = std::this_thread::get_id();
  std::atomic<bool> same{true};
  parallel_for(100, 1, [&](int64_t, int64_t) {
    if (std::this_thread::get_id() != me) same = false;
  });
  CHECK(same);
}

TEST_CASE("parallel_for: nested and concurrent loops finish", "[parallel]") {
  const int64_t n = int64_t(1) << 16;
  std::atomic<int64_t> total{0};
  auto nested = [&] {
    parallel_for(8, int64_t(1) << 20, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        parallel_for(n, 4, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
    });
  };
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) callers.emplace_back(nested);
  nested();
  for (auto& c : callers) c.join();
  CHECK(total == 4 * 8 * n);
  // Many small loops in a row reuse the same threads.
  std::atomic<int64_t> sum{0};
  for (int r = 0; r < 2000; ++r)
    parallel_for(1 << 17, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  CHECK(sum == int64_t(2000) << 17);
}

TEST_CASE("parallel_for: an exception in a chunk reaches the caller", "[parallel]") {
  const int64_t n = int64_t(1) << 20;
  CHECK_THROWS_WITH(parallel_for(n, 1,
                                 [&](int64_t b, int64_t) {
                                   if (b > 0 || cpu_thread_count() == 1)
                                     throw std::runtime_error("chunk failed");
                                 }),
                    "chunk failed");
  // The pool still works afterwards.
  std::atomic<int64_t> sum{0};
  parallel_for(n, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  CHECK(sum == n);
}
