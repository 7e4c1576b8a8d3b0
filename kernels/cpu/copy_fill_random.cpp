// CPU kernels: strided copy with dtype conversion, fill, and the Philox random fills.
#include <cmath>

#include "kernels/common/convert.h"
#include "core/philox.h"
#include "core/parallel.h"
#include "kernels/kernels.h"
#include "core/error.h"

namespace fg::cpu {

namespace {
template <typename Dst, typename Src>
void copy_typed(int64_t n, const StridedIndexer<2>& idx, const Src* src, Dst* dst) {
  // By stretches along the innermost dimension (for_each_run), on the thread pool.
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    for_each_run(idx, begin, end, [&](const int64_t* off, const int64_t* st, int64_t len) {
      Dst* d = dst + off[0];
      const Src* s = src + off[1];
      if (st[0] == 1 && st[1] == 1) {
        for (int64_t j = 0; j < len; ++j) d[j] = convert<Dst>(s[j]);
      } else {
        for (int64_t j = 0; j < len; ++j) d[j * st[0]] = convert<Dst>(s[j * st[1]]);
      }
    });
  });
}
}  // namespace

void copy(DType dst_dtype, DType src_dtype, int64_t n, const StridedIndexer<2>& idx,
          const void* src, void* dst) {
  FG_DISPATCH_ALL(dst_dtype, "copy", [&] {
    using D = scalar_t;
    FG_DISPATCH_ALL(src_dtype, "copy", [&] {
      copy_typed<D, scalar_t>(n, idx, static_cast<const scalar_t*>(src), static_cast<D*>(dst));
    });
  });
}

void fill(DType dtype, int64_t n, const StridedIndexer<1>& idx, void* out, double value) {
  FG_DISPATCH_ALL(dtype, "fill", [&] {
    scalar_t v = Convert<scalar_t>::from_double(value);
    scalar_t* p = static_cast<scalar_t*>(out);
    parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      for_each_run(idx, begin, end, [&](const int64_t* off, const int64_t* st, int64_t len) {
        for (int64_t j = 0; j < len; ++j) p[off[0] + j * st[0]] = v;
      });
    });
  });
}

void rand_uniform(DType dtype, int64_t n, uint64_t seed, uint64_t offset, double low,
                  double high, void* out) {
  FG_DISPATCH_FLOAT(dtype, "rand", [&] {
    scalar_t* p = static_cast<scalar_t*>(out);
    for (int64_t i = 0; i < n; ++i) {
      double u = double(philox_uniform(seed, offset, uint64_t(i)));
      p[i] = Convert<scalar_t>::from_double(low + (high - low) * u);
    }
  });
}

// Shared by the CPU and CUDA paths: Box-Muller on draws 2i and 2i + 1, in float.
void rand_normal(DType dtype, int64_t n, uint64_t seed, uint64_t offset, double mean, double std,
                 void* out) {
  FG_DISPATCH_FLOAT(dtype, "randn", [&] {
    scalar_t* p = static_cast<scalar_t*>(out);
    for (int64_t i = 0; i < n; ++i) {
      float u1 = philox_uniform(seed, offset, 2 * uint64_t(i));
      float u2 = philox_uniform(seed, offset, 2 * uint64_t(i) + 1);
      float r = std::sqrt(-2.0f * std::log(1.0f - u1));  // 1 - u1 is in (0, 1]
      float z = r * std::cos(6.283185307179586f * u2);
      p[i] = Convert<scalar_t>::from_double(mean + std * double(z));
    }
  });
}

void rand_int(DType dtype, int64_t n, uint64_t seed, uint64_t offset, int64_t low, int64_t high,
              void* out) {
  uint64_t range = uint64_t(high - low);
  FG_DISPATCH_ALL(dtype, "randint", [&] {
    scalar_t* p = static_cast<scalar_t*>(out);
    for (int64_t i = 0; i < n; ++i) {
      // 64 random bits from two words, reduced modulo the range (bias < range / 2^64).
      uint64_t hi = philox_bits(seed, offset, kPhiloxStreamUniform, 2 * uint64_t(i));
      uint64_t lo = philox_bits(seed, offset, kPhiloxStreamUniform, 2 * uint64_t(i) + 1);
      p[i] = Convert<scalar_t>::from_double(double(low + int64_t(((hi << 32) | lo) % range)));
    }
  });
}

}  // namespace fg::cpu
