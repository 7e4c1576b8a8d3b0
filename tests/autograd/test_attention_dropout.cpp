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
