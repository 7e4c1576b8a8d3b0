// The raw AdamW op (ops::adamw_): one fused step is adamw_update (kernels/optim.h) applied
// element by element on the host, bit for bit, for f32 parameters and for bf16/f16 ones with an
// f32 master copy, on every device; it bumps the versions of what it writes; its argument
// errors name what is wrong.
#include "support/test_util.h"

using namespace fg;
using Catch::Matchers::Contains;
using test::rnd;

namespace {

struct AdamWState {
  Tensor param, master, grad, exp_avg, exp_avg_sq;
};

// Fresh state for n elements of a dtype-dt parameter on device d (moments as after a few steps).
AdamWState make_state(int64_t n, DType dt, Device d) {
  AdamWState s;
  s.param = rnd({n}, dt, d, 1);
  if (dt != DType::f32) s.master = ops::to_dtype(s.param, DType::f32);
  s.grad = rnd({n}, dt, d, 2);
  s.exp_avg = rnd({n}, DType::f32, d, 3, -0.1, 0.1);
  s.exp_avg_sq = rnd({n}, DType::f32, d, 4, 0.0, 0.01);
  return s;
}

}  // namespace

FG_TEST_ALL_DEVICES("adamw_ is adamw_update element by element", "[optim]") {
  const AdamWArgs args = AdamWArgs::make(3e-3, 0.9, 0.95, 1e-8, 0.1, 3, 0.7);
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t n : {1, 1000, 4099}) {
      INFO(dtype_name(dt) << " n=" << n);
      AdamWState s = make_state(n, dt, device);
      std::vector<float> p = (dt == DType::f32 ? s.param : s.master).to_vector<float>();
      std::vector<float> g = s.grad.to_vector<float>(), m = s.exp_avg.to_vector<float>(),
                         v = s.exp_avg_sq.to_vector<float>();
      for (size_t i = 0; i < p.size(); ++i) adamw_update(p[i], g[i], m[i], v[i], args);
      const uint64_t version = s.param.unsafe_impl()->version;
      ops::adamw_(s.param, s.master, s.grad, s.exp_avg, s.exp_avg_sq, args);
      CHECK(s.param.unsafe_impl()->version == version + 1);
      CHECK(s.exp_avg.to_vector<float>() == m);
      CHECK(s.exp_avg_sq.to_vector<float>() == v);
      Tensor expected = from_vector<float>(p, {n}, TensorOptions(DType::f32));
      if (dt != DType::f32) {
        CHECK(s.master.to_vector<float>() == p);
        expected = ops::to_dtype(expected, dt);  // the parameter is the master rounded
      }
      CHECK(s.param.to_vector<float>() == expected.to_vector<float>());
    }
  }
}

FG_TEST_ALL_DEVICES("adamw_ refuses state that does not fit the parameter", "[optim]") {
  const AdamWArgs args = AdamWArgs::make(1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
  AdamWState h = make_state(8, DType::bf16, device);
  Tensor none;
  REQUIRE_THROWS_WITH(ops::adamw_(h.param, none, h.grad, h.exp_avg, h.exp_avg_sq, args),
                      Contains("master copy"));
  AdamWState f = make_state(8, DType::f32, device);
  const uint64_t version = f.param.unsafe_impl()->version;
  Tensor extra = zeros({8}, TensorOptions(DType::f32).device(device));
  REQUIRE_THROWS_WITH(ops::adamw_(f.param, extra, f.grad, f.exp_avg, f.exp_avg_sq, args),
                      Contains("its own master copy"));
  Tensor short_m = zeros({7}, TensorOptions(DType::f32).device(device));
  REQUIRE_THROWS_WITH(ops::adamw_(f.param, none, f.grad, short_m, f.exp_avg_sq, args),
                      Contains("exp_avg must be") && Contains("[8]"));
  REQUIRE_THROWS_WITH(ops::adamw_(f.param, none, h.grad, f.exp_avg, f.exp_avg_sq, args),
                      Contains("gradient") && Contains("bf16"));
  Tensor ints = zeros({8}, TensorOptions(DType::i32).device(device));
  REQUIRE_THROWS_WITH(ops::adamw_(ints, none, ints, f.exp_avg, f.exp_avg_sq, args),
                      Contains("i32") && Contains("not supported"));
  // Nothing was written by the refused calls.
  CHECK(f.param.unsafe_impl()->version == version);
}

// Sizes around the multi-tensor chunk (8192) and more tensors than one launch's batch (40).
static std::vector<int64_t> multi_sizes() {
  std::vector<int64_t> n;
  for (int i = 0; i < 45; ++i) n.push_back(1 + (i * 977) % 3000);
  for (int64_t big : {8191, 8192, 8193, 3 * 8192 + 5}) n.push_back(big);
  return n;
}

FG_TEST_ALL_DEVICES("adamw_multi_ is adamw_ on each tensor, bit for bit", "[optim]") {
  const AdamWArgs args = AdamWArgs::make(3e-3, 0.9, 0.95, 1e-8, 0.1, 5, 0.6);
  for (DType dt : {DType::f32, DType::bf16}) {
    INFO(dtype_name(dt));
    std::vector<AdamWState> one, multi;
    std::vector<ops::AdamWSlot> slots;
    for (int64_t n : multi_sizes()) {
      one.push_back(make_state(n, dt, device));
      AdamWState c{ops::clone(one.back().param),
                    one.back().master.defined() ? ops::clone(one.back().master) : Tensor(),
                    ops::clone(one.back().grad), ops::clone(one.back().exp_avg),
                    ops::clone(one.back().exp_avg_sq)};
      multi.push_back(c);
      slots.push_back({c.param, c.master, c.grad, c.exp_avg, c.exp_avg_sq});
    }
    for (AdamWState& s : one) ops::adamw_(s.param, s.master, s.grad, s.exp_avg, s.exp_avg_sq, args);
    const uint64_t version = multi[0].param.unsafe_impl()->version;
    ops::adamw_multi_(slots, args);
    CHECK(multi[0].param.unsafe_impl()->version == version + 1);
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("tensor " << i << " of " << one[i].param.numel() << " elements");
      CHECK(multi[i].param.to_vector<float>() == one[i].param.to_vector<float>());
      CHECK(multi[i].exp_avg.to_vector<float>() == one[i].exp_avg.to_vector<float>());
      CHECK(multi[i].exp_avg_sq.to_vector<float>() == one[i].exp_avg_sq.to_vector<float>());
      if (dt != DType::f32)
        CHECK(multi[i].master.to_vector<float>() == one[i].master.to_vector<float>());
    }
  }
}

FG_TEST_ALL_DEVICES("adamw_multi_ refuses mixed dtypes and bad state", "[optim]") {
  const AdamWArgs args = AdamWArgs::make(1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
  AdamWState a = make_state(8, DType::f32, device), b = make_state(8, DType::bf16, device);
  std::vector<ops::AdamWSlot> mixed{{a.param, a.master, a.grad, a.exp_avg, a.exp_avg_sq},
                                    {b.param, b.master, b.grad, b.exp_avg, b.exp_avg_sq}};
  REQUIRE_THROWS_WITH(ops::adamw_multi_(mixed, args), Contains("group the parameters"));
  std::vector<ops::AdamWSlot> no_master{{b.param, Tensor(), b.grad, b.exp_avg, b.exp_avg_sq}};
  REQUIRE_THROWS_WITH(ops::adamw_multi_(no_master, args), Contains("master copy"));
}

FG_TEST_ALL_DEVICES("sum_squares adds the squares of many tensors", "[optim]") {
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    INFO(dtype_name(dt));
    std::vector<Tensor> ts;
    double expected = 0;
    int seed = 10;
    for (int64_t n : multi_sizes()) {
      ts.push_back(rnd({n}, dt, device, seed++));
      for (double v : ts.back().to_vector<double>()) expected += v * v;
    }
    // A strided view is read as its elements, not its storage.
    ts.push_back(ops::transpose(rnd({37, 29}, dt, device, 99), 0, 1));
    for (double v : ts.back().to_vector<double>()) expected += v * v;
    Tensor s = ops::sum_squares(ts);
    CHECK(s.dtype() == DType::f64);
    CHECK(s.device() == device);
    CHECK(s.dim() == 0);
    const double tol = dt == DType::f64 ? 1e-12 : 1e-5;  // float partial sums of 8192 squares
    CHECK(std::abs(s.item() - expected) <= tol * expected);
  }
  REQUIRE_THROWS_WITH(ops::sum_squares({rnd({4}, DType::f32, device, 1),
                                        rnd({4}, DType::bf16, device, 2)}),
                      Contains("sum_squares"));
  REQUIRE_THROWS_WITH(ops::sum_squares({}), Contains("no tensors"));
}
