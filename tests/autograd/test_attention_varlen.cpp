// Variable-length attention (varlen_attention): packed sequences against the batched node.
//   - sequences of equal lengths packed give the batched call's O and gradients, dropout
//     included (the same Philox rule, sequence s as batch entry s): bit for bit on one device;
//   - sequences of different lengths give what each sequence gives alone (the batched node on
//     a batch of one, without dropout), causal bottom-right within each sequence, GQA;
//   - empty sequences and sequences without keys; the refusals.
// The fp64 check of the same function is `flashgrad gradcheck attention` (its varlen rows).
#include <algorithm>
#include <cmath>

#include "support/test_util.h"

#include "autograd/attention.h"

using namespace fg;
using fg::test::rel_err;

namespace {

// [B, N, H, D] -> packed [B * N, H, D] (a copy that keeps its own gradient).
Tensor pack(const Tensor& t) { return t.reshape({t.size(0) * t.size(1), t.size(2), t.size(3)}); }

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector<double>()) m = std::max(m, std::fabs(x));
  return m;
}

std::vector<int64_t> offsets(const std::vector<int64_t>& lens) {
  std::vector<int64_t> cu{0};
  for (int64_t n : lens) cu.push_back(cu.back() + n);
  return cu;
}

}  // namespace

FG_TEST_ALL_DEVICES("varlen attention: equal lengths match the batched call, dropout included",
                    "[attention][varlen]") {
  const TensorOptions to = TensorOptions(DType::f32).device(device);
  Generator g(3);
  const int64_t B = 3, N = 45, Hq = 4, Hkv = 2, D = 32;
  Tensor q = randn({B, N, Hq, D}, to, &g), k = randn({B, N, Hkv, D}, to, &g),
         v = randn({B, N, Hkv, D}, to, &g), dout = randn({B, N, Hq, D}, to, &g);
  for (double p : {0.0, 0.25}) {
    const AttentionOptions opt = AttentionOptions().causal().dropout(p).seed(9, 4);
    Tensor qa = q.detach().set_requires_grad(true), ka = k.detach().set_requires_grad(true),
           va = v.detach().set_requires_grad(true);
    Tensor oa = scaled_dot_product_attention(qa, ka, va, opt);
    oa.backward(dout);
    Tensor qb = pack(q).detach().set_requires_grad(true), kb = pack(k).detach().set_requires_grad(true),
           vb = pack(v).detach().set_requires_grad(true);
    const std::vector<int64_t> cu = offsets({N, N, N});
    Tensor ob = varlen_attention(qb, kb, vb, cu, cu, opt);
    ob.backward(pack(dout));
    INFO("dropout " << p);
    CHECK(rel_err(ob, pack(oa)) == 0.0);
    CHECK(rel_err(qb.grad(), pack(qa.grad())) == 0.0);
    CHECK(rel_err(kb.grad(), pack(ka.grad())) == 0.0);
    CHECK(rel_err(vb.grad(), pack(va.grad())) == 0.0);
  }
}

FG_TEST_ALL_DEVICES("varlen attention: different lengths match each sequence alone",
                    "[attention][varlen]") {
  const TensorOptions to = TensorOptions(DType::f32).device(device);
  Generator g(5);
  const int64_t Hq = 4, Hkv = 1, D = 64;
  // One new token against 40 keys, an empty query, a longer query than keys (rows that see
  // nothing under causal), a sequence without keys, a long one across several tiles.
  const std::vector<int64_t> lq{1, 0, 30, 7, 150}, lk{40, 12, 20, 0, 170};
  const std::vector<int64_t> cq = offsets(lq), ck = offsets(lk);
  Tensor q = randn({cq.back(), Hq, D}, to, &g).set_requires_grad(true);
  Tensor k = randn({ck.back(), Hkv, D}, to, &g).set_requires_grad(true);
  Tensor v = randn({ck.back(), Hkv, D}, to, &g).set_requires_grad(true);
  Tensor dout = randn({cq.back(), Hq, D}, to, &g);
  const AttentionOptions opt = AttentionOptions().causal();
  Tensor o = varlen_attention(q, k, v, cq, ck, opt);
  o.backward(dout);
  for (size_t s = 0; s < lq.size(); ++s) {
    INFO("sequence " << s << ": " << lq[s] << " queries, " << lk[s] << " keys");
    if (lq[s] == 0) {  // its keys got no gradient
      CHECK(max_abs(k.grad().narrow(0, ck[s], lk[s])) == 0.0);
      continue;
    }
    if (lk[s] == 0) {  // its rows see nothing
      CHECK(max_abs(o.narrow(0, cq[s], lq[s])) == 0.0);
      CHECK(max_abs(q.grad().narrow(0, cq[s], lq[s])) == 0.0);
      continue;
    }
    Tensor qs = q.detach().narrow(0, cq[s], lq[s]).unsqueeze(0).contiguous().set_requires_grad(true);
    Tensor ks = k.detach().narrow(0, ck[s], lk[s]).unsqueeze(0).contiguous().set_requires_grad(true);
    Tensor vs = v.detach().narrow(0, ck[s], lk[s]).unsqueeze(0).contiguous().set_requires_grad(true);
    Tensor os = scaled_dot_product_attention(qs, ks, vs, opt);
    os.backward(dout.narrow(0, cq[s], lq[s]).unsqueeze(0).contiguous());
    CHECK(rel_err(o.narrow(0, cq[s], lq[s]), os.squeeze(0)) < 1e-6);
    CHECK(rel_err(q.grad().narrow(0, cq[s], lq[s]), qs.grad().squeeze(0)) < 1e-6);
    CHECK(rel_err(k.grad().narrow(0, ck[s], lk[s]), ks.grad().squeeze(0)) < 1e-6);
    CHECK(rel_err(v.grad().narrow(0, ck[s], lk[s]), vs.grad().squeeze(0)) < 1e-6);
  }
}

TEST_CASE("varlen attention: refusals name what is wrong", "[attention][varlen]") {
  Tensor q = randn({10, 2, 32}), k = randn({12, 2, 32}), v = randn({12, 2, 32});
  CHECK_THROWS_WITH(varlen_attention(q.unsqueeze(0), k, v, {0, 10}, {0, 12}),
                    Catch::Contains("packed q [total_q, Hq, D]"));
  CHECK_THROWS_WITH(varlen_attention(q, k, v, {0, 9}, {0, 12}),
                    Catch::Contains("from 0 to the packed length 10"));
  CHECK_THROWS_WITH(varlen_attention(q, k, v, {0, 6, 4, 10}, {0, 2, 4, 12}),
                    Catch::Contains("must not decrease"));
  CHECK_THROWS_WITH(varlen_attention(q, k, v, {0, 10}, {0, 6, 12}),
                    Catch::Contains("the same number of sequences"));
  CHECK_THROWS_WITH(varlen_attention(q, k, v, {0, 10}, {0, 12},
                                     AttentionOptions().impl(AttentionImpl::naive)),
                    Catch::Contains("flash implementation only"));
  CHECK_THROWS_WITH(varlen_attention(q, k, v, {0, 10}, {0, 12},
                                     AttentionOptions().block_mask(BlockMask::sliding_window(10, 12, 4, false))),
                    Catch::Contains("block masks"));
  CHECK_THROWS_WITH(varlen_attention(q, randn({12, 3, 32}), randn({12, 3, 32}), {0, 10}, {0, 12}),
                    Catch::Contains("multiple of the key/value heads"));
}
