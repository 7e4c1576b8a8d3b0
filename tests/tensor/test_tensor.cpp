// Tensor basics: creation, views share storage, copies, dtype and device moves, printing,
// and random numbers that agree between devices.
#include "support/test_util.h"

#include <sstream>

using namespace fg;
using fg::test::rel_err;

FG_TEST_ALL_DEVICES("creation fills the right values", "[tensor]") {
  auto o = TensorOptions(DType::f32).device(device);
  Tensor z = zeros({2, 3}, o), one = ones({4}, o), f = full({2, 2}, 2.5, o);
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.device() == device);
  for (double v : z.to_vector<double>()) CHECK(v == 0.0);
  for (double v : one.to_vector<double>()) CHECK(v == 1.0);
  for (double v : f.to_vector<double>()) CHECK(v == 2.5);
  Tensor a = arange(2, 11, 3, TensorOptions(DType::i64).device(device));
  CHECK(a.to_vector<int64_t>() == std::vector<int64_t>{2, 5, 8});
  Tensor s = scalar_tensor(7.0, o);
  CHECK(s.dim() == 0);
  CHECK(s.item() == 7.0);
  Tensor t = tensor({1.5, -2.0, 3.0}, TensorOptions(DType::f64).device(device));
  CHECK(t.to_vector<double>() == std::vector<double>{1.5, -2.0, 3.0});
}

FG_TEST_ALL_DEVICES("views share storage and index correctly", "[tensor]") {
  Tensor x = arange(24, TensorOptions(DType::f32).device(device)).reshape({2, 3, 4});
  Tensor t = x.transpose(0, 2);  // [4, 3, 2]
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.same_storage(x));
  CHECK_FALSE(t.is_contiguous());
  // t[i][j][k] == x[k][j][i] == k*12 + j*4 + i
  auto tv = t.contiguous().to_vector<double>();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) CHECK(tv[size_t(i * 6 + j * 2 + k)] == k * 12 + j * 4 + i);

  Tensor s = x.slice(2, 1, 4, 2);  // last dim elements 1 and 3
  CHECK(s.shape() == Shape{2, 3, 2});
  auto sv = s.contiguous().to_vector<double>();
  CHECK(sv[0] == 1);
  CHECK(sv[1] == 3);
  CHECK(sv[2] == 5);
  Tensor n = x.narrow(1, 1, 2);
  CHECK(n.contiguous().to_vector<double>()[0] == 4);
  Tensor sel = x.select(0, 1).select(0, 2);
  CHECK(sel.to_vector<double>() == std::vector<double>{20, 21, 22, 23});
  Tensor p = x.permute({1, 2, 0});
  CHECK(p.shape() == Shape{3, 4, 2});
  CHECK(p.contiguous().to_vector<double>()[1] == 12);
  Tensor u = x.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.squeeze(1).shape() == x.shape());
  Tensor e = ones({3, 1}, TensorOptions().device(device)).expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides()[0] == 0);
  CHECK(x.view({6, -1}).shape() == Shape{6, 4});
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  // Writing through a view changes the base.
  Tensor v = x.select(1, 0);
  v.fill_(-1.0);
  CHECK(x.to_vector<double>()[0] == -1.0);
  CHECK(x.to_vector<double>()[4] == 4.0);
}

TEST_CASE("view refuses what needs a copy, reshape copies", "[tensor]") {
  Tensor x = arange(12, DType::f32).reshape({3, 4}).transpose(0, 1);
  REQUIRE_THROWS_WITH(x.view({12}), Catch::Contains("use reshape()"));
  Tensor r = x.reshape({12});
  CHECK_FALSE(r.same_storage(x));
  CHECK(r.to_vector<double>()[1] == 4.0);
  REQUIRE_THROWS_WITH(x.reshape({5, -1}), Catch::Contains("invalid for a tensor of 12"));
  REQUIRE_THROWS_WITH(x.transpose(0, 2), Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(x.narrow(0, 2, 5), Catch::Contains("outside dim 0"));
  REQUIRE_THROWS_WITH(ones({2, 3}).expand({4, 3, 3}), Catch::Contains("cannot expand"));
}

FG_TEST_ALL_DEVICES("dtype conversions round as documented", "[tensor]") {
  Tensor x = tensor({1.0, -2.5, 3.14159265358979, 65504.0, 1e-7}, TensorOptions(DType::f64).device(device));
  auto bf = x.to(DType::bf16).to_vector<double>();
  CHECK(bf[0] == 1.0);
  CHECK(bf[1] == -2.5);
  CHECK(bf[2] == Approx(3.140625));  // bf16 keeps 8 significant bits
  auto h = x.to(DType::f16).to_vector<double>();
  CHECK(h[2] == Approx(3.140625));
  CHECK(h[3] == 65504.0);  // largest finite f16
  CHECK(h[4] == 1.1920928955078125e-07);  // f16 subnormal: 2 x 2^-24
  auto i = x.to(DType::i32).to_vector<int32_t>();
  CHECK(i == std::vector<int32_t>{1, -2, 3, 65504, 0});
  // Round trip through f32 is exact for f32-representable values.
  Tensor y = tensor({0.5, 0.25, -8.0}, TensorOptions(DType::f32).device(device));
  CHECK(y.to(DType::f64).to(DType::f32).to_vector<float>() == std::vector<float>{0.5f, 0.25f, -8.0f});
}

TEST_CASE("16-bit conversions round to nearest even", "[tensor]") {
  // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
  CHECK(float(bfloat16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(float(bfloat16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256);
  CHECK(float(float16(1.0f + 1.0f / 2048)) == 1.0f);
  CHECK(float(float16(70000.0f)) == INFINITY);
  CHECK(std::isnan(float(bfloat16(NAN))));
  CHECK(std::isnan(float(float16(NAN))));
}

TEST_CASE("printing shows shape, dtype and values", "[tensor]") {
  Tensor x = arange(6, DType::f32).reshape({2, 3});
  std::string s = to_string(x);
  CHECK_THAT(s, Catch::Contains("shape=[2, 3]"));
  CHECK_THAT(s, Catch::Contains("dtype=f32"));
  CHECK_THAT(s, Catch::Contains("device=cpu"));
  CHECK_THAT(s, Catch::Contains("5"));
  std::string big = to_string(zeros({100, 100}));
  CHECK_THAT(big, Catch::Contains("..."));
  CHECK(big.size() < 2000);
}

FG_TEST_ALL_DEVICES("random numbers have the right moments", "[tensor]") {
  Generator g(123);
  Tensor u = rand({20000}, TensorOptions().device(device), &g);
  auto uv = u.to_vector<double>();
  double mean = 0, lo = 1, hi = 0;
  for (double v : uv) {
    mean += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  mean /= double(uv.size());
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  CHECK(std::fabs(mean - 0.5) < 5 * std::sqrt(1.0 / 12 / 20000));
  Tensor n = randn({20000}, TensorOptions(DType::f64).device(device), &g);
  auto nv = n.to_vector<double>();
  double m = 0, var = 0;
  for (double v : nv) m += v;
  m /= double(nv.size());
  for (double v : nv) var += (v - m) * (v - m);
  var /= double(nv.size());
  CHECK(std::fabs(m) < 5 / std::sqrt(20000.0));
  CHECK(std::fabs(var - 1.0) < 0.05);
  Tensor r = randint(3, 7, {1000}, TensorOptions(DType::i64).device(device), &g);
  for (int64_t v : r.to_vector<int64_t>()) {
    CHECK(v >= 3);
    CHECK(v < 7);
  }
  // A seed fixes the stream; draws advance it.
  Generator a(9), b(9);
  CHECK(rand({8}, {}, &a).to_vector<float>() == rand({8}, {}, &b).to_vector<float>());
  CHECK(rand({8}, {}, &a).to_vector<float>() != rand({8}, {}, &a).to_vector<float>());
}

FG_TEST_ALL_DEVICES("host draws of a generator are the random ops' values", "[tensor]") {
  Generator g(2024);
  g.set_offset(5);
  // rand and randint each take one offset (5, then 6); the host draws read those offsets again
  // without advancing the generator.
  Tensor u = rand({300}, TensorOptions(DType::f64).device(device), &g);
  const int64_t low = -3, range = 1000003;
  Tensor r = randint(low, low + range, {300}, TensorOptions(DType::i64).device(device), &g);
  REQUIRE(g.offset() == 7);
  auto uv = u.to_vector<double>();
  auto rv = r.to_vector<int64_t>();
  for (uint64_t i = 0; i < 300; ++i) {
    CHECK(g.random_uniform(5, i) == uv[i]);
    CHECK(low + int64_t(g.random_u64(6, i) % uint64_t(range)) == rv[i]);
  }
  CHECK(g.offset() == 7);
  // Another seed or offset draws other values.
  CHECK(Generator(2025).random_u64(5, 0) != g.random_u64(5, 0));
  CHECK(g.random_u64(6, 0) != g.random_u64(5, 0));
}

#ifdef FLASHGRAD_WITH_CUDA
TEST_CASE("CPU and CUDA draw the same random numbers", "[tensor][cuda]") {
  Generator a(77), b(77);
  Tensor c = rand({1000}, TensorOptions(), &a);
  Tensor d = rand({1000}, TensorOptions().device(Device::cuda()), &b);
  CHECK(c.to_vector<float>() == d.to_vector<float>());  // bit-identical: integer-derived
  Tensor rc = randn({1000}, TensorOptions(), &a);
  Tensor rd = randn({1000}, TensorOptions().device(Device::cuda()), &b);
  CHECK(rel_err(rd, rc) < 1e-6);  // log/cos may differ in the last bit
}

TEST_CASE("tensors move between devices", "[tensor][cuda]") {
  Tensor x = randn({3, 5, 7}, DType::f64);
  Tensor y = x.to(Device::cuda()).transpose(0, 2).contiguous().cpu();
  CHECK(y.to_vector<double>() == x.transpose(0, 2).contiguous().to_vector<double>());
  Tensor h = x.to(Device::cuda()).to(DType::bf16).cpu();
  CHECK(h.to_vector<double>() == x.to(DType::bf16).to_vector<double>());
}
#endif
