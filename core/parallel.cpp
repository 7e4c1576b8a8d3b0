// The CPU thread pool behind parallel_for (core/parallel.h).
#include "core/parallel.h"

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/env.h"

namespace fg {

int64_t cpu_thread_count() {
  static const int64_t n = [] {
    const int64_t hw = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
    return std::min<int64_t>(hw, env_int("FLASHGRAD_CPU_THREADS", hw, 1, INT64_MAX));
  }();
  return n;
}

namespace {

thread_local bool in_pool_task = false;  // set on the pool's threads and while a caller runs

class Pool {
 public:
  // Starts up to `workers` threads; if the system refuses one, the pool runs with those it got
  // (none: every loop runs on its caller).
  explicit Pool(int64_t workers) {
    int64_t started = 0;
    try {
      for (; started < workers; ++started) std::thread([this, started] { loop(started); }).detach();
    } catch (const std::system_error&) {
    }
    workers_ = started;  // before any task is posted (posting takes m_, as the workers do)
  }
  int64_t workers() const { return workers_; }

  // Runs task(1 .. n - 1) on the workers (worker w takes w + 1, w + 1 + workers, ...) while the
  // caller runs task(0). parallel_for makes at most as many tasks as threads, one each.
  // (A process that forks must not use the pool in the child: its threads do not follow.)
  bool try_run(int64_t n, const std::function<void(int64_t)>& task) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lk(m_);
      task_ = &task;
      n_ = n;
      remaining_ = n - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_one(task, 0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [this] { return remaining_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  void run_one(const std::function<void(int64_t)>& task, int64_t i) {
    const bool was = in_pool_task;
    in_pool_task = true;
    try {
      task(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
    in_pool_task = was;
  }

  void loop(int64_t w) {
    in_pool_task = true;
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t)>* task;
      int64_t n;
      {
        std::unique_lock<std::mutex> lk(m_);
        wake_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        task = task_;
        n = n_;
      }
      int64_t ran = 0;
      for (int64_t i = w + 1; i < n; i += workers_) {
        run_one(*task, i);
        ++ran;
      }
      if (ran > 0) {
        std::lock_guard<std::mutex> lk(m_);
        remaining_ -= ran;
        if (remaining_ == 0) done_.notify_one();
      }
    }
  }

  int64_t workers_ = 0;
  std::mutex run_mutex_;  // one parallel_run at a time
  std::mutex m_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t n_ = 0, remaining_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;
};

// Started on first use and never destroyed: its threads sleep until the process ends.
Pool& pool() {
  static Pool* p = new Pool(cpu_thread_count() - 1);
  return *p;
}

}  // namespace

void parallel_run(int64_t n, const std::function<void(int64_t)>& task) {
  if (n <= 0) return;
  if (n > 1 && !in_pool_task && cpu_thread_count() > 1 && pool().workers() > 0 &&
      pool().try_run(n, task))
    return;
  for (int64_t i = 0; i < n; ++i) task(i);  // nested, busy, or one chunk
}

}  // namespace fg
