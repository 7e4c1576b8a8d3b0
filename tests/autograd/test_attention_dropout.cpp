// Dropout randomness at the node: every call without an explicit seed draws a fresh offset
// from the default generator (so layers and steps get different masks), the same generator
// state replays the same masks, and flash and naive use the same mask for the same draw.
#include "support/test_util.h"

#include "autograd/attention.h"

using namespace fg;
using fg::test::rel_err;

FG_TEST_ALL_DEVICES("attention dropout: successive calls get new masks, a reseed replays them",
                    "[attention][dropout]") {
  const TensorOptions to = TensorOptions(DType::f32).device(device);
  Generator g(11);
  Tensor q = rand({2, 40, 4, 32}, to, &g), k = rand({2, 40, 2, 32}, to, &g),
         v = rand({2, 40, 2, 32}, to, &g);
  const AttentionOptions opt = AttentionOptions().dropout(0.3).causal();

  manual_seed(5);
  const uint64_t before = default_generator().offset();
  Tensor o1 = scaled_dot_product_attention(q, k, v, opt);
  Tensor o2 = scaled_dot_product_attention(q, k, v, opt);
  REQUIRE(default_generator().offset() == before + 2);  // one offset per call
  // Different masks: the outputs differ by about as much as dropout moves them.
  CHECK(rel_err(o1, o2) > 0.1);

  manual_seed(5);
  Tensor r1 = scaled_dot_product_attention(q, k, v, opt);
  Tensor r2 = scaled_dot_product_attention(q, k, v, opt);
  CHECK(rel_err(r1, o1) == 0.0);
  CHECK(rel_err(r2, o2) == 0.0);

  // The naive path draws the same offset and applies the same mask.
  manual_seed(5);
  Tensor n1 = scaled_dot_product_attention(q, k, v, AttentionOptions(opt).impl(AttentionImpl::naive));
  CHECK(rel_err(n1, o1) < 1e-5);

  // An explicit seed leaves the default generator alone.
  const uint64_t at = default_generator().offset();
  scaled_dot_product_attention(q, k, v, AttentionOptions(opt).seed(3, 0));
  CHECK(default_generator().offset() == at);
}

// The node saves the (seed, offset) its forward drew: its backward regenerates that mask even
// when other calls have drawn offsets from the default generator in between.
FG_TEST_ALL_DEVICES("attention dropout: the backward uses the forward's mask", "[attention][dropout]") {
  const TensorOptions to = TensorOptions(DType::f32).device(device);
  Generator g(12);
  const Tensor q = rand({2, 70, 4, 32}, to, &g), k = rand({2, 70, 2, 32}, to, &g),
               v = rand({2, 70, 2, 32}, to, &g), dout = rand({2, 70, 4, 32}, to, &g);
  auto grads = [&](const AttentionOptions& opt, bool draw_in_between) {
    Tensor ql = q.detach().set_requires_grad(true), kl = k.detach().set_requires_grad(true),
           vl = v.detach().set_requires_grad(true);
    Tensor o = scaled_dot_product_attention(ql, kl, vl, opt);
    if (draw_in_between) {
      scaled_dot_product_attention(q, k, v, opt);  // another dropout call, another offset
      rand({16}, to);
    }
    o.backward(dout);
    return std::vector<Tensor>{o, ql.grad(), kl.grad(), vl.grad()};
  };
  const AttentionOptions opt = AttentionOptions().dropout(0.3).causal();
  manual_seed(9);
  const uint64_t seed = default_generator().seed(), offset = default_generator().offset();
  const std::vector<Tensor> drawn = grads(opt, true);
  const std::vector<Tensor> given = grads(AttentionOptions(opt).seed(seed, offset), false);
  const std::vector<Tensor> naive =
      grads(AttentionOptions(opt).seed(seed, offset).impl(AttentionImpl::naive), false);
  for (size_t i = 0; i < 4; ++i) {
    INFO("tensor " << i << " (o, dq, dk, dv)");
    CHECK(rel_err(drawn[i], given[i]) == 0.0);
    CHECK(rel_err(drawn[i], naive[i]) < 1e-5);
  }
}
