// Tests of the reductions: sum, mean, amax over any dims (negative, several, all; keepdim
// both ways), argmax with ties, sum_to, their errors, and gradchecks of sum, mean and max.
//
// Sizes are chosen to reach every CUDA launch shape: short rows (a warp per row), long rows
// (a block per row), and reductions over a non-last dim (column tiles), odd and round.
#include <algorithm>
#include <cmath>

#include "support/test_util.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::make;
using test::poison;
using test::rel_err;
using test::require_close;
using test::rnd;
using test::small_ints;
using test::tol;

namespace {

enum class Red { sum, mean, max };

// Host reference: reduces `x` (logical row-major values of shape s) over the dims in `dims`
// (empty = all; negative wrap). Returns a tensor of the keepdim or squeezed shape.
Tensor reduce_ref(const Tensor& x, std::vector<int64_t> dims, Red op, bool keepdim) {
  Shape s = x.shape();
  int64_t nd = int64_t(s.size());
  std::vector<bool> mask(size_t(nd), dims.empty());
  for (int64_t d : dims) mask[size_t(d < 0 ? d + nd : d)] = true;
  Shape keep = s, squeezed;
  for (int64_t d = 0; d < nd; ++d) {
    if (mask[size_t(d)]) keep[size_t(d)] = 1;
    else squeezed.push_back(s[size_t(d)]);
  }
  auto xv = x.to_vector<double>();
  std::vector<double> r(size_t(shape_numel(keep)), op == Red::max ? -INFINITY : 0.0);
  std::vector<int64_t> count(r.size(), 0);
  for (int64_t i = 0; i < int64_t(xv.size()); ++i) {
    int64_t rem = i, o = 0, stride = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
      int64_t k = rem % s[size_t(d)];
      rem /= s[size_t(d)];
      if (!mask[size_t(d)]) o += k * stride;
      stride *= keep[size_t(d)];
    }
    double v = xv[size_t(i)];
    if (op == Red::max) r[size_t(o)] = std::max(r[size_t(o)], v);
    else r[size_t(o)] += v;
    count[size_t(o)]++;
  }
  if (op == Red::mean)
    for (size_t o = 0; o < r.size(); ++o) r[o] /= double(count[o]);
  return from_vector<double>(r, keepdim ? keep : squeezed, TensorOptions(DType::f64));
}

// Host argmax along dim (first maximum).
std::vector<int64_t> argmax_ref(const Tensor& x, int64_t dim) {
  Shape s = x.shape();
  int64_t d = dim < 0 ? dim + int64_t(s.size()) : dim;
  int64_t outer = 1, inner = 1, len = s[size_t(d)];
  for (int64_t k = 0; k < d; ++k) outer *= s[size_t(k)];
  for (int64_t k = d + 1; k < int64_t(s.size()); ++k) inner *= s[size_t(k)];
  auto xv = x.to_vector<double>();
  std::vector<int64_t> r(size_t(outer * inner));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < len; ++j)
        if (xv[size_t((o * len + j) * inner + i)] > xv[size_t((o * len + best) * inner + i)]) best = j;
      r[size_t(o * inner + i)] = best;
    }
  return r;
}

struct ReduceCase {
  Shape shape;
  std::vector<int64_t> dims;
};

std::vector<ReduceCase> reduce_cases() {
  return {
      {{3, 4, 5}, {0}},          {{3, 4, 5}, {1}},        {{3, 4, 5}, {2}},
      {{3, 4, 5}, {-1}},         {{3, 4, 5}, {0, 2}},     {{3, 4, 5}, {-3, -2}},
      {{3, 4, 5}, {}},           {{2, 3, 4, 5}, {3, 1}},  {{7}, {0}},
      {{37, 129}, {1}},          // a warp per row
      {{3, 5000}, {-1}},         // a block per row
      {{4000, 3}, {0}},          // column tiles, long len
      {{2, 3000, 33}, {1}},      // column tiles, inner not a multiple of 32
      {{64, 64}, {0, 1}},        // round sizes, all dims
  };
}

}  // namespace

FG_TEST_ALL_DEVICES("sum, mean and amax match a double reference over any dims",
                    "[reduce]") {
  uint64_t seed = 1;
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    for (const auto& c : reduce_cases()) {
      Tensor x = rnd(c.shape, dt, device, ++seed);
      for (bool keepdim : {false, true}) {
        INFO(dtype_name(dt) << " shape " << shape_str(c.shape) << " dims " << c.dims.size()
                            << (c.dims.empty() ? " (all)" : "") << " keepdim " << keepdim);
        poison(device);
        Tensor s = ops::sum(x, c.dims, keepdim);
        REQUIRE(s.dtype() == dt);
        require_close(s, reduce_ref(x, c.dims, Red::sum, keepdim), dt);
        poison(device);
        require_close(ops::mean(x, c.dims, keepdim), reduce_ref(x, c.dims, Red::mean, keepdim), dt);
        poison(device);
        require_close(ops::amax(x, c.dims, keepdim), reduce_ref(x, c.dims, Red::max, keepdim), dt);
      }
    }
  }
}

FG_TEST_ALL_DEVICES("reductions of strided views and of f16", "[reduce]") {
  // A transposed (non-contiguous) input: [6, 40] viewed as [40, 6].
  for (DType dt : {DType::f32, DType::f16}) {
    Tensor x = ops::transpose(rnd({6, 40}, dt, device, 77), 0, 1);
    REQUIRE_FALSE(x.is_contiguous());
    for (std::vector<int64_t> dims : {std::vector<int64_t>{0}, {1}, {}}) {
      require_close(ops::sum(x, dims), reduce_ref(x, dims, Red::sum, false), dt);
      require_close(ops::mean(x, dims, true), reduce_ref(x, dims, Red::mean, true), dt);
      require_close(ops::amax(x, dims), reduce_ref(x, dims, Red::max, false), dt);
    }
  }
}

FG_TEST_ALL_DEVICES("integer reductions are exact", "[reduce]") {
  uint64_t seed = 500;
  for (DType dt : {DType::i32, DType::i64}) {
    for (const auto& c : reduce_cases()) {
      Tensor x = rnd(c.shape, dt, device, ++seed, -50, 50);
      INFO(dtype_name(dt) << " " << shape_str(c.shape));
      Tensor s = ops::sum(x, c.dims);
      REQUIRE(s.dtype() == dt);
      require_close(s, reduce_ref(x, c.dims, Red::sum, false), dt);
      require_close(ops::amax(x, c.dims, true), reduce_ref(x, c.dims, Red::max, true), dt);
    }
    // Large magnitudes: an i64 sum must not go through a float accumulator.
    if (dt == DType::i64) {
      std::vector<int64_t> v = {(int64_t(1) << 53) + 1, 1, 1};
      Tensor big = ops::to_device(from_vector<int64_t>(v, {3}, TensorOptions(DType::i64)), device);
      REQUIRE(ops::sum(big).to_vector<int64_t>()[0] == (int64_t(1) << 53) + 3);
    }
  }
}

FG_TEST_ALL_DEVICES("16-bit sums accumulate in float across several dims", "[reduce]") {
  // Sum of ones over dims {0, 2} of [3, 2, 257]: 771, which bf16 rounds to 772. Rounding the
  // partial sums (257 -> 256) to bf16 between the two steps would give 768 instead.
  Tensor x = ones({3, 2, 257}, TensorOptions(DType::bf16).device(device));
  auto s = ops::sum(x, {0, 2}).to_vector<double>();
  REQUIRE(s == std::vector<double>{772, 772});
  auto m = ops::mean(x, {0, 2}).to_vector<double>();
  REQUIRE(m == std::vector<double>{1, 1});
  Tensor h = ones({3, 2, 257}, TensorOptions(DType::f16).device(device));
  REQUIRE(ops::sum(h, {2, 0}).to_vector<double>() == std::vector<double>{771, 771});  // f16 holds 771
}

FG_TEST_ALL_DEVICES("argmax returns the first maximum, on every launch shape", "[reduce]") {
  // Small integers make ties common; the reference picks the first.
  struct Case {
    Shape shape;
    int64_t dim;
  };
  std::vector<Case> cases = {{{2, 4, 3}, 1},  {{50, 100}, 1},  {{50, 100}, -2}, {{2, 3000}, 1},
                             {{2, 3000, 5}, 1}, {{4000, 3}, 0}, {{9}, 0}};
  uint64_t seed = 900;
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
    for (const auto& c : cases) {
      Tensor x = make(small_ints(shape_numel(c.shape), ++seed, 0, 5), c.shape, dt, device);
      INFO(dtype_name(dt) << " " << shape_str(c.shape) << " dim " << c.dim);
      auto ref = argmax_ref(x, c.dim);
      poison(device);
      Tensor a = ops::argmax(x, c.dim);
      REQUIRE(a.dtype() == DType::i64);
      REQUIRE(a.to_vector<int64_t>() == ref);
      Tensor ak = ops::argmax(x, c.dim, true);
      Shape ks = c.shape;
      ks[size_t(c.dim < 0 ? c.dim + int64_t(ks.size()) : c.dim)] = 1;
      REQUIRE(ak.shape() == ks);
      REQUIRE(ak.to_vector<int64_t>() == ref);
    }
  }
  // Explicit ties, and a maximum far along a long row (block path) that appears twice.
  Tensor t = make({1, 3, 3, 2, 0, 0, -1, 0}, {2, 4}, DType::f32, device);
  REQUIRE(ops::argmax(t, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  std::vector<double> row(3001, 0.0);
  row[2500] = 7;
  row[700] = 7;
  row[2999] = 6;
  REQUIRE(ops::argmax(make(row, {1, 3001}, DType::f32, device), 1).to_vector<int64_t>() ==
          std::vector<int64_t>{700});
  // All equal: index 0.
  REQUIRE(ops::argmax(full({3, 2000}, -2.0, TensorOptions(DType::f32).device(device)), 1)
              .to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0});
  // A strided view.
  Tensor xt = ops::transpose(make(small_ints(6 * 40, 5, 0, 9), {6, 40}, DType::f32, device), 0, 1);
  REQUIRE(ops::argmax(xt, 0).to_vector<int64_t>() == argmax_ref(xt, 0));
  REQUIRE(ops::argmax(xt, 1).to_vector<int64_t>() == argmax_ref(xt, 1));
}

FG_TEST_ALL_DEVICES("NaN propagates through amax and wins argmax", "[reduce]") {
  Tensor x = make({1, NAN, 3, 5, 2, 4}, {2, 3}, DType::f32, device);
  auto m = ops::amax(x, {1}).to_vector<double>();
  REQUIRE(std::isnan(m[0]));
  REQUIRE(m[1] == 5);
  REQUIRE(ops::argmax(x, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 0});
}

FG_TEST_ALL_DEVICES("sum_to reduces broadcast dims back to a shape", "[reduce]") {
  Tensor g = rnd({2, 3, 4}, DType::f64, device, 31);
  struct Case {
    Shape target;
    std::vector<int64_t> dims;
  };
  std::vector<Case> cases = {{{3, 1}, {0, 2}}, {{1, 4}, {0, 1}}, {{4}, {0, 1}},
                             {{2, 1, 4}, {1}}, {{}, {}},         {{1, 1, 1}, {}}};
  for (const auto& c : cases) {
    INFO("target " << shape_str(c.target));
    Tensor r = ops::sum_to(g, c.target);
    REQUIRE(r.shape() == c.target);
    auto ref = reduce_ref(g, c.dims, Red::sum, true).to_vector<double>();
    REQUIRE(rel_err(r, from_vector<double>(ref, c.target, TensorOptions(DType::f64))) < 1e-12);
  }
  REQUIRE(test::max_abs_diff(ops::sum_to(g, {2, 3, 4}), g) == 0);
  REQUIRE_THROWS_WITH(ops::sum_to(g, {5}), Contains("sum_to") && Contains("[2, 3, 4]") && Contains("[5]"));
  REQUIRE_THROWS_WITH(ops::sum_to(g, {1, 2, 3, 4}), Contains("sum_to"));
}

FG_TEST_ALL_DEVICES("reduction errors name the op and the shape", "[reduce][errors]") {
  Tensor x = rnd({3, 4}, DType::f32, device, 1);
  REQUIRE_THROWS_WITH(ops::sum(x, {2}), Contains("sum") && Contains("[3, 4]"));
  REQUIRE_THROWS_WITH(ops::sum(x, {0, -2}), Contains("sum") && Contains("more than once"));
  REQUIRE_THROWS_WITH(ops::amax(x, {-3}), Contains("amax"));
  REQUIRE_THROWS_WITH(ops::argmax(x, 5), Contains("argmax"));
  REQUIRE_THROWS_WITH(ops::mean(rnd({3}, DType::i64, device, 2, -50, 50)), Contains("mean") && Contains("i64"));
  Tensor e = zeros({3, 0}, TensorOptions(DType::f32).device(device));
  REQUIRE_THROWS_WITH(ops::argmax(e, 1), Contains("argmax") && Contains("empty"));
  REQUIRE_THROWS_WITH(ops::amax(e, {1}), Contains("amax"));
  // Summing an empty dim is fine: zeros.
  REQUIRE(ops::sum(e, {1}).to_vector<double>() == std::vector<double>{0, 0, 0});
  REQUIRE_THROWS_AS(fg::sum(x, {7}), fg::Error);
  REQUIRE_THROWS_AS(x.max(2), fg::Error);
}

// ---- autograd ----

FG_TEST_ALL_DEVICES("gradcheck: sum and mean over dims", "[reduce][autograd]") {
  using V = std::vector<Tensor>;
  Tensor x = test::leaf({3, 4, 5}, device, DType::f64, 21);
  test::require_gradcheck([](const V& v) { return fg::sum(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::sum(v[0], {1}); }, {x});
  test::require_gradcheck([](const V& v) { return fg::sum(v[0], {0, 2}, true); }, {x});
  test::require_gradcheck([](const V& v) { return fg::sum(v[0], {-1}); }, {x});
  test::require_gradcheck([](const V& v) { return fg::mean(v[0]); }, {x});
  test::require_gradcheck([](const V& v) { return fg::mean(v[0], {-2}, true); }, {x});
  test::require_gradcheck([](const V& v) { return fg::mean(v[0], {2, 0}); }, {x});
  test::require_gradcheck([](const V& v) { return v[0].sum({1}, true); }, {x});
  test::require_gradcheck([](const V& v) { return v[0].mean({0}); }, {x});
  // Through a broadcast and a strided view.
  Tensor b = test::leaf({4, 1}, device, DType::f64, 22);
  test::require_gradcheck(
      [](const V& v) { return fg::sum(fg::mul(fg::transpose(v[0], 0, 2), v[1]), {0}); }, {x, b});
}

FG_TEST_ALL_DEVICES("gradcheck: max along a dim", "[reduce][autograd]") {
  using V = std::vector<Tensor>;
  Tensor x = test::leaf({3, 4, 5}, device, DType::f64, 23);
  test::require_gradcheck([](const V& v) { return fg::max(v[0], 1); }, {x});
  test::require_gradcheck([](const V& v) { return fg::max(v[0], -1, true); }, {x});
  test::require_gradcheck([](const V& v) { return v[0].max(0); }, {x});
  Tensor x1 = test::leaf({6}, device, DType::f64, 24);  // a 0-d result
  test::require_gradcheck([](const V& v) { return fg::max(v[0], 0); }, {x1});
  test::require_gradcheck([](const V& v) { return fg::mean(v[0], {0}); }, {x1});
  // Ties: the whole gradient goes to the first maximal element.
  Tensor t = make({1, 3, 3, 2, 2, 0}, {2, 3}, DType::f64, device).set_requires_grad(true);
  auto m = fg::max(t, 1);
  REQUIRE(m.to_vector<double>() == std::vector<double>{3, 2});
  fg::sum(fg::mul(m, make({1, 2}, {2}, DType::f64, device))).backward();
  REQUIRE(t.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 2, 0, 0});
  // argmax has no gradient and matches the raw op.
  Tensor a = t.argmax(1);
  REQUIRE_FALSE(a.requires_grad());
  REQUIRE(a.to_vector<int64_t>() == std::vector<int64_t>{1, 0});
  REQUIRE(fg::argmax(t, 1, true).shape() == Shape{2, 1});
}

// Shapes with too few rows or column tiles to fill a GPU, where the CUDA kernels split the
// reduced dim into slices and reduce the slices' partial results in a second pass. Small
// integer data keeps every sum exact in float, so the results are compared for equality.
FG_TEST_ALL_DEVICES("reductions over a long dim split across the GPU", "[reduce]") {
  auto ints = [&](const Shape& s, DType dt) {
    const int64_t n = shape_numel(s);
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double((i * 13) % 7 - 3);
    return std::make_pair(from_vector<double>(v, s, TensorOptions(DType::f64)).to(device).to(dt), v);
  };
  for (DType dt : {DType::f32, DType::bf16, DType::f64, DType::i64}) {
    INFO(dtype_name(dt));
    {  // one long row: sum, max, min
      auto [x, v] = ints({1, 200003}, dt);
      double sum = 0;
      for (double e : v) sum += e;
      auto want = from_vector<double>({sum}, {1}, TensorOptions(DType::f64)).to(dt).to_vector<double>();
      CHECK(ops::sum(x, {1}).to_vector<double>() == want);
      CHECK(ops::amax(x, {1}).to_vector<double>() == std::vector<double>{3});
      CHECK(ops::argmax(x, 1).to_vector<double>()[0] == 1);  // the first 3: (1 * 13) % 7 - 3
    }
    for (Shape s : {Shape{30001, 3}, Shape{2, 9001, 70}, Shape{16384, 96}}) {  // tall columns
      INFO(shape_str(s));
      auto [x, v] = ints(s, dt);
      const int64_t outer = s.size() == 3 ? s[0] : 1, len = s[s.size() - 2], inner = s.back();
      std::vector<double> want(size_t(outer * inner), 0);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < len; ++j)
          for (int64_t i = 0; i < inner; ++i)
            want[size_t(o * inner + i)] += v[size_t((o * len + j) * inner + i)];
      Tensor w = from_vector<double>(want, {outer * inner}, TensorOptions(DType::f64)).to(dt);
      Tensor got = ops::sum(x, {int64_t(s.size()) - 2});
      CHECK(got.dtype() == dt);
      CHECK(got.contiguous().to_vector<double>() == w.to_vector<double>());
    }
  }
}

#ifdef FLASHGRAD_WITH_CUDA
// The CUDA column reduction's 16-byte vector path (f32/bf16 with inner a multiple of 4/8 and an
// aligned pointer: inner 3072) and its fallbacks (inner 3075; a view one element in), over a
// long dim (split into slices) and a short one, against the CPU kernels (double accumulators).
TEST_CASE("CUDA column reductions match the CPU on the vector path and its fallbacks",
          "[reduce][cuda]") {
  struct Case {
    Shape shape;
    int64_t dim, offset;
  };
  const std::vector<Case> cases = {{{16384, 3072}, 0, 0}, {{16384, 3075}, 0, 0},
                                   {{16384, 3072}, 0, 1}, {{3, 5, 3072}, 1, 0},
                                   {{3, 5, 3075}, 1, 0},  {{3, 5, 3072}, 1, 1}};
  Generator g(1300);
  const Tensor values = randn({16384 * 3075 + 1}, TensorOptions(DType::f32), &g);
  for (DType dt : {DType::bf16, DType::f32}) {
    const Tensor flat = ops::to_dtype(values, dt);
    const Tensor flat_gpu = ops::to_device(flat, Device::cuda());
    for (const auto& c : cases) {
      INFO(dtype_name(dt) << " " << shape_str(c.shape) << " dim " << c.dim << " offset "
                          << c.offset);
      const int64_t n = shape_numel(c.shape);
      Tensor x = ops::view(ops::narrow(flat_gpu, 0, c.offset, n), c.shape);
      Tensor xc = ops::view(ops::narrow(flat, 0, c.offset, n), c.shape);
      REQUIRE((reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0) == (c.offset == 0));
      Tensor s = ops::sum(x, {c.dim});
      REQUIRE(s.dtype() == dt);
      require_close(s, ops::sum(xc, {c.dim}), dt);
      REQUIRE(ops::amax(x, {c.dim}).to_vector<double>() ==
              ops::amax(xc, {c.dim}).to_vector<double>());  // exact
    }
  }
}
#endif
