// CPU reductions over the middle dim of a contiguous [outer, len, inner] array: sum, max, min
// and argmax. The reference for kernels/cuda/reduce.cu.
//
// Sums accumulate in double for every floating dtype (and in int64 for integers), so the CPU
// result is the accurate one that the CUDA tree reductions (fp32 accumulators) are tested
// against. Max/min are exact in any accumulator. Each output is summed left to right by one
// thread, so results do not depend on the thread count.
#include <algorithm>
#include <thread>
#include <vector>

#include "kernels/common/elementwise_math.h"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg::cpu {
namespace {

// The accumulator of a CPU reduction: double for floating types, int64 for integers.
template <typename T>
using cpu_acc_t = std::conditional_t<std::is_integral<T>::value, int64_t, double>;

// Splits [0, outputs) over threads when there is enough work (work = outputs * len).
template <typename F>
void parallel_outputs(int64_t outputs, int64_t len, F fn) {
  int64_t hw = std::max<int64_t>(1, int64_t(std::thread::hardware_concurrency()));
  int64_t chunks = std::min<int64_t>(hw, std::min<int64_t>(outputs, (outputs * len) >> 16));
  if (chunks <= 1) {
    fn(int64_t(0), outputs);
    return;
  }
  std::vector<std::thread> threads;
  int64_t step = (outputs + chunks - 1) / chunks;
  for (int64_t c = 1; c < chunks; ++c) {
    int64_t b = c * step, e = std::min(outputs, b + step);
    if (b < e) threads.emplace_back([=] { fn(b, e); });
  }
  fn(int64_t(0), std::min(outputs, step));
  for (auto& t : threads) t.join();
}

template <typename T, ReduceOp OP>
void reduce_impl(int64_t outer, int64_t len, int64_t inner, const T* in, T* out) {
  using A = cpu_acc_t<T>;
  parallel_outputs(outer * inner, len, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      int64_t o = k / inner, i = k % inner;
      const T* p = in + o * len * inner + i;
      A acc = reduce_identity<OP, A>();
      for (int64_t j = 0; j < len; ++j) acc = reduce_combine<OP, A>(acc, load_as<A>(p[j * inner]));
      // 16-bit types go through float on the way back (their only conversion).
      if constexpr (std::is_integral<T>::value) out[k] = T(acc);
      else out[k] = store_as<T>(compute_t<T>(acc));
    }
  });
}

template <typename T>
void argmax_impl(int64_t outer, int64_t len, int64_t inner, const T* in, int64_t* out) {
  using C = compute_t<T>;
  parallel_outputs(outer * inner, len, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      int64_t o = k / inner, i = k % inner;
      const T* p = in + o * len * inner + i;
      C best = load_as<C>(p[0]);
      int64_t best_j = 0;
      for (int64_t j = 1; j < len; ++j) {
        C v = load_as<C>(p[j * inner]);
        if (argmax_better(v, j, best, best_j)) {
          best = v;
          best_j = j;
        }
      }
      out[k] = best_j;
    }
  });
}

}  // namespace

void reduce(ReduceOp op, DType dtype, int64_t outer, int64_t len, int64_t inner, const void* in,
            void* out) {
  FG_CHECK(outer >= 0 && len >= 0 && inner >= 0, "reduce: negative size");
  FG_CHECK(len > 0 || op == ReduceOp::sum, "reduce: max/min over an empty dim (len 0) has no value");
  if (outer * inner == 0) return;
  FG_DISPATCH_ALL(dtype, "reduce", [&] {
    FG_DISPATCH_REDUCE_OP(op, [&] {
      reduce_impl<scalar_t, kOp>(outer, len, inner, static_cast<const scalar_t*>(in),
                                 static_cast<scalar_t*>(out));
    });
  });
}

void argmax(DType dtype, int64_t outer, int64_t len, int64_t inner, const void* in,
            int64_t* out) {
  FG_CHECK(len > 0, "argmax: the reduced dim is empty (len 0)");
  if (outer * inner == 0) return;
  FG_DISPATCH_ALL(dtype, "argmax", [&] {
    argmax_impl<scalar_t>(outer, len, inner, static_cast<const scalar_t*>(in), out);
  });
}

}  // namespace fg::cpu
