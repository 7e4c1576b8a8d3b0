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
