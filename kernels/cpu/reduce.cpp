// CPU reductions over the middle dim of a contiguous [outer, len, inner] array: sum, max, min
// and argmax. The reference for kernels/cuda/reduce.cu.
//
// Sums accumulate in double for every floating dtype (and in int64 for integers), so the CPU
// result is the accurate one that the CUDA tree reductions (fp32 accumulators) are tested
// against. Max/min are exact in any accumulator. Each output is summed left to right by one
// thread, so results do not depend on the thread count.
#include <algorithm>
#include <vector>

#include "core/parallel.h"

#include "kernels/common/elementwise_math.h"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg::cpu {
namespace {

// The accumulator of a CPU reduction: double for floating types, int64 for integers.
template <typename T>
using cpu_acc_t = std::conditional_t<std::is_integral<T>::value, int64_t, double>;

template <typename T, ReduceOp OP, typename Out>
void reduce_impl(int64_t outer, int64_t len, int64_t inner, const T* in, Out* out) {
  using A = cpu_acc_t<T>;
  auto store = [&](int64_t k, A acc) {
    // 16-bit types go through float on the way back (their only conversion).
    if constexpr (std::is_integral<T>::value) out[k] = Out(acc);
    else out[k] = store_as<Out>(compute_t<Out>(acc));
  };
  // Outputs split over the thread pool; each output summed over j in order by one thread.
  parallel_for(outer * inner, len, [&](int64_t begin, int64_t end) {
    if (inner == 1) {  // rows: each output reads one contiguous row
      for (int64_t k = begin; k < end; ++k) {
        const T* p = in + k * len;
        A acc = reduce_identity<OP, A>();
        for (int64_t j = 0; j < len; ++j) acc = reduce_combine<OP, A>(acc, load_as<A>(p[j]));
        store(k, acc);
      }
      return;
    }
    // Columns: the outputs [i0, i1) of one outer index together, row by row, so that the reads
    // are contiguous (the same order of combination per output as one column at a time).
    std::vector<A> acc;
    for (int64_t k = begin; k < end;) {
      const int64_t o = k / inner, i0 = k % inner, i1 = std::min(inner, i0 + (end - k));
      acc.assign(size_t(i1 - i0), reduce_identity<OP, A>());
      const T* p = in + o * len * inner;
      for (int64_t j = 0; j < len; ++j) {
        const T* row = p + j * inner;
        for (int64_t i = i0; i < i1; ++i)
          acc[size_t(i - i0)] = reduce_combine<OP, A>(acc[size_t(i - i0)], load_as<A>(row[i]));
      }
      for (int64_t i = i0; i < i1; ++i) store(o * inner + i, acc[size_t(i - i0)]);
      k += i1 - i0;
    }
  });
}

template <typename T>
void argmax_impl(int64_t outer, int64_t len, int64_t inner, const T* in, int64_t* out) {
  using C = compute_t<T>;
  parallel_for(outer * inner, len, [&](int64_t begin, int64_t end) {
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

size_t reduce_workspace(ReduceOp, DType, int64_t, int64_t, int64_t) { return 0; }

void reduce(ReduceOp op, DType dtype, DType out_dtype, int64_t outer, int64_t len, int64_t inner,
            const void* in, void* out, void*) {
  FG_CHECK(outer >= 0 && len >= 0 && inner >= 0, "reduce: negative size");
  FG_CHECK(len > 0 || op == ReduceOp::sum, "reduce: max/min over an empty dim (len 0) has no value");
  check_reduce_out_dtype(op, dtype, out_dtype);
  if (outer * inner == 0) return;
  FG_DISPATCH_ALL(dtype, "reduce", [&] {
    FG_DISPATCH_REDUCE_OP(op, [&] {
      if (out_dtype == DType::f32 && dtype != DType::f32) {
        if constexpr (std::is_same_v<compute_t<scalar_t>, float>)
          reduce_impl<scalar_t, kOp>(outer, len, inner, static_cast<const scalar_t*>(in),
                                     static_cast<float*>(out));
      } else {
        reduce_impl<scalar_t, kOp>(outer, len, inner, static_cast<const scalar_t*>(in),
                                   static_cast<scalar_t*>(out));
      }
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
