// The attention check (autograd/attention_check.h): grid rows against the naive node or the
// fp64 reference, and multi-tile finite differences.
#include "autograd/attention_check.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/attention.h"
#include "autograd/functions.h"
#include "core/error.h"
#include "kernels/attention/attention.h"

namespace fg {

const char* attention_check_mask_name(AttentionCheckMask m) {
  switch (m) {
    case AttentionCheckMask::none: return "-";
    case AttentionCheckMask::sliding_window: return "window";
    case AttentionCheckMask::global_local: return "glob+loc";
  }
  return "?";
}

std::vector<AttentionCheckRow> attention_check_grid(bool quick, bool cuda) {
  std::vector<AttentionCheckRow> rows;
  auto row = [&](DType dt, int64_t D, int64_t Nq, int64_t Nk, int64_t Hq, int64_t Hkv,
                 bool causal, double p, AttentionCheckMask mask) {
    AttentionCheckRow r;
    r.dtype = dt, r.D = D, r.Nq = Nq, r.Nk = Nk, r.Hq = Hq, r.Hkv = Hkv;
    r.causal = causal, r.dropout = p, r.mask = mask;
    rows.push_back(r);
  };
  const AttentionCheckMask none = AttentionCheckMask::none;
  for (DType dt : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    for (int64_t D : {32, 64, 128}) {
      row(dt, D, 64, 64, 2, 2, false, 0.0, none);  // plain
      if (quick && D != 64) continue;
      row(dt, D, 37, 53, 2, 2, true, 0.0, none);    // odd lengths, causal Nq < Nk
      row(dt, D, 77, 45, 4, 2, true, 0.17, none);   // causal Nq > Nk, dropout, GQA
      row(dt, D, 100, 100, 4, 1, false, 0.3, none);  // MQA, dropout
    }
    // Head dims 96 and 256 (on CUDA the mma.sync kernels in bf16/f16, the SIMT ones otherwise;
    // no f64 kernel at 256 there).
    for (int64_t D : {96, 256}) {
      if (cuda && dt == DType::f64 && !attention_cuda_supports_head_dim(D, dt)) continue;
      row(dt, D, 64, 64, 2, 2, false, 0.0, none);
      if (!quick) row(dt, D, 77, 45, 4, 2, true, 0.17, none);
    }
    row(dt, 64, 200, 200, 2, 2, false, 0.0, AttentionCheckMask::sliding_window);
    row(dt, 64, 200, 200, 2, 2, true, 0.1, AttentionCheckMask::sliding_window);
    row(dt, 64, 150, 230, 4, 2, false, 0.0, AttentionCheckMask::global_local);
    for (int set : {1, 2}) {
      row(dt, set == 1 ? 64 : 32, attention_check_varlen_offsets(set, false).back(),
          attention_check_varlen_offsets(set, true).back(), set == 1 ? 4 : 2, set == 1 ? 2 : 1,
          set == 1, set == 1 ? 0.2 : 0.0, none);
      rows.back().varlen = set;
    }
  }
  return rows;
}

std::vector<int64_t> attention_check_varlen_offsets(int set, bool keys) {
  const std::vector<int64_t> lens =
      set == 1 ? (keys ? std::vector<int64_t>{53, 40, 64, 9, 0} : std::vector<int64_t>{37, 1, 64, 0, 20})
               : (keys ? std::vector<int64_t>{100, 5} : std::vector<int64_t>{16, 70});
  std::vector<int64_t> cu{0};
  for (int64_t n : lens) cu.push_back(cu.back() + n);
  return cu;
}

// The CPU bounds are about 3x the worst row's rel_l2 over the full grid (the rows' inputs come
// from Generator(2024), as `flashgrad gradcheck attention` draws them; GCC 12, x86-64):
//   f64 8.3e-16, f32 5.2e-7, bf16 2.3e-3, f16 2.9e-4
// (the 16-bit errors are mostly the rounding of the outputs to 8 or 11 significant bits). The
// CUDA bounds are about 3x the worst row's rel_l2 of `flashgrad gradcheck attention --device
// cuda` (H200, sm_90a, 2026-11-28): f64 8.2e-16, f32 2.0e-6 (the 3xTF32 forward at D 64 and
// 128, the f32 default then), bf16 2.9e-3 and f16 4.3e-4 (P and dS rounded to 16 bits for the tensor cores).
double attention_check_bound(DType dtype, Device device) {
  const bool cuda = device.is_cuda();
  switch (dtype) {
    case DType::f64: return 2.5e-15;
    case DType::f32: return cuda ? 6.2e-6 : 1.6e-6;
    case DType::bf16: return cuda ? 9e-3 : 6.9e-3;
    case DType::f16: return cuda ? 1.4e-3 : 8.7e-4;
    default: throw Error(str("attention check: no bound for dtype ", dtype_name(dtype)));
  }
}

namespace {

// O, dQ, dK, dV of one run, as host values.
struct Outputs {
  std::vector<double> t[4];
};

AttentionOptions options_for(const AttentionCheckRow& r, AttentionImpl impl) {
  AttentionOptions o;
  o.impl(impl).causal(r.causal).dropout(r.dropout).seed(1234, 7);
  if (r.mask == AttentionCheckMask::sliding_window)
    o.block_mask(BlockMask::sliding_window(r.Nq, r.Nk, 64, r.causal));
  if (r.mask == AttentionCheckMask::global_local)
    o.block_mask(BlockMask::global_local(r.Nq, r.Nk, 16, 64));
  return o;
}

Outputs run(const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& dout,
            const AttentionOptions& opt, DType dt) {
  Tensor q = q0.to(dt).detach().set_requires_grad(true);
  Tensor k = k0.to(dt).detach().set_requires_grad(true);
  Tensor v = v0.to(dt).detach().set_requires_grad(true);
  Tensor o = scaled_dot_product_attention(q, k, v, opt);
  o.backward(dout.to(dt));
  return {{o.to_vector<double>(), q.grad().to_vector<double>(), k.grad().to_vector<double>(),
           v.grad().to_vector<double>()}};
}

// The fp64 reference of kernels/attention on the host values of the (contiguous) inputs, with
// the options of the row (options_for: seed 1234, offset 7, scale 1/sqrt(D)).
Outputs reference(const AttentionCheckRow& r, int64_t B, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& dout) {
  const AttentionOptions opt = options_for(r, AttentionImpl::flash);
  AttentionParams p;
  p.B = B, p.Nq = r.Nq, p.Nk = r.Nk, p.Hq = r.Hq, p.Hkv = r.Hkv, p.D = r.D;
  set_contiguous_strides(p);
  p.dtype = DType::f64;
  p.softmax_scale = 1.0 / std::sqrt(double(r.D));
  p.causal = r.causal;
  p.dropout_p = r.dropout;
  p.seed = opt.seed_, p.offset = opt.offset_;
  if (opt.block_mask_) {
    p.block_mask = opt.block_mask_->bits.data();
    p.block_mask_heads = opt.block_mask_->heads;
  }
  const std::vector<double> qh = q.to_vector<double>(), kh = k.to_vector<double>(),
                            vh = v.to_vector<double>(), dh = dout.to_vector<double>();
  Outputs ref;
  std::vector<double> lse(size_t(B * r.Hq * r.Nq));
  ref.t[0].resize(qh.size()), ref.t[1].resize(qh.size());
  ref.t[2].resize(kh.size()), ref.t[3].resize(kh.size());
  attention_reference_forward(p, qh.data(), kh.data(), vh.data(), ref.t[0].data(), lse.data());
  attention_reference_backward(p, qh.data(), kh.data(), vh.data(), dh.data(), ref.t[1].data(),
                               ref.t[2].data(), ref.t[3].data());
  return ref;
}

AttentionCheckError compare(const std::vector<double>& x, const std::vector<double>& ref) {
  AttentionCheckError e;
  double m = 0, num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double d = std::fabs(x[i] - ref[i]);
    if (std::isnan(d)) d = std::numeric_limits<double>::infinity();
    e.max_abs = std::max(e.max_abs, d);
    m = std::max(m, std::fabs(ref[i]));
    num += d * d, den += ref[i] * ref[i];
  }
  e.max_rel = m > 0 ? e.max_abs / m : e.max_abs;
  e.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return e;
}

// A varlen row: varlen_attention in the row's dtype against the fp64 reference run on each
// sequence alone (batch index s in the dropout counter), for every dtype.
AttentionCheckResult varlen_row(const AttentionCheckRow& r, Device device, Generator& gen) {
  const std::vector<int64_t> cq = attention_check_varlen_offsets(r.varlen, false),
                             ck = attention_check_varlen_offsets(r.varlen, true);
  const TensorOptions o = TensorOptions(DType::f64).device(device);
  Tensor q = randn({cq.back(), r.Hq, r.D}, o, &gen), k = randn({ck.back(), r.Hkv, r.D}, o, &gen),
         v = randn({ck.back(), r.Hkv, r.D}, o, &gen), dout = randn({cq.back(), r.Hq, r.D}, o, &gen);
  q = q.to(r.dtype).to(DType::f64), k = k.to(r.dtype).to(DType::f64);
  v = v.to(r.dtype).to(DType::f64), dout = dout.to(r.dtype).to(DType::f64);
  const AttentionOptions opt = options_for(r, AttentionImpl::flash);
  Outputs flash;
  {
    Tensor qx = q.to(r.dtype).detach().set_requires_grad(true);
    Tensor kx = k.to(r.dtype).detach().set_requires_grad(true);
    Tensor vx = v.to(r.dtype).detach().set_requires_grad(true);
    Tensor out = varlen_attention(qx, kx, vx, cq, ck, opt);
    out.backward(dout.to(r.dtype));
    flash = {{out.to_vector<double>(), qx.grad().to_vector<double>(),
              kx.grad().to_vector<double>(), vx.grad().to_vector<double>()}};
  }
  const std::vector<double> qh = q.to_vector<double>(), kh = k.to_vector<double>(),
                            vh = v.to_vector<double>(), dh = dout.to_vector<double>();
  Outputs ref;
  for (int i = 0; i < 4; ++i) ref.t[i].assign(i < 2 ? qh.size() : kh.size(), 0.0);
  const int64_t qrow = r.Hq * r.D, krow = r.Hkv * r.D;
  for (size_t s = 0; s + 1 < cq.size(); ++s) {
    AttentionParams p;
    p.B = 1, p.Nq = cq[s + 1] - cq[s], p.Nk = ck[s + 1] - ck[s], p.Hq = r.Hq, p.Hkv = r.Hkv;
    p.D = r.D;
    if (p.Nq == 0 || p.Nk == 0) continue;  // no rows, or rows that see nothing: all zero
    set_contiguous_strides(p);
    p.dtype = DType::f64;
    p.softmax_scale = 1.0 / std::sqrt(double(r.D));
    p.causal = r.causal, p.dropout_p = r.dropout;
    p.seed = opt.seed_, p.offset = opt.offset_, p.batch_index_base = int64_t(s);
    const size_t qo = size_t(cq[s] * qrow), ko = size_t(ck[s] * krow);
    std::vector<double> lse(size_t(p.Hq * p.Nq));
    attention_reference_forward(p, qh.data() + qo, kh.data() + ko, vh.data() + ko,
                                ref.t[0].data() + qo, lse.data());
    attention_reference_backward(p, qh.data() + qo, kh.data() + ko, vh.data() + ko,
                                 dh.data() + qo, ref.t[1].data() + qo, ref.t[2].data() + ko,
                                 ref.t[3].data() + ko);
  }
  AttentionCheckResult res;
  for (int i = 0; i < 4; ++i) {
    res.flash[i] = compare(flash.t[i], ref.t[i]);
    res.worst = std::max(res.worst, res.flash[i].rel_l2);
  }
  res.bound = attention_check_bound(r.dtype, device);
  res.ok = res.worst <= res.bound;
  return res;
}

}  // namespace

AttentionCheckResult attention_check_row(const AttentionCheckRow& r, Device device,
                                         Generator& gen) {
  if (r.varlen) return varlen_row(r, device, gen);
  const int64_t B = 2;
  const TensorOptions o = TensorOptions(DType::f64).device(device);
  Tensor q = randn({B, r.Nq, r.Hq, r.D}, o, &gen), k = randn({B, r.Nk, r.Hkv, r.D}, o, &gen),
         v = randn({B, r.Nk, r.Hkv, r.D}, o, &gen), dout = randn({B, r.Nq, r.Hq, r.D}, o, &gen);
  const bool low = r.dtype == DType::bf16 || r.dtype == DType::f16;
  if (low) {  // round the inputs once so that every path sees the same values
    q = q.to(r.dtype).to(DType::f64);
    k = k.to(r.dtype).to(DType::f64);
    v = v.to(r.dtype).to(DType::f64);
    dout = dout.to(r.dtype).to(DType::f64);
  }
  AttentionCheckResult res;
  const Outputs flash = run(q, k, v, dout, options_for(r, AttentionImpl::flash), r.dtype);
  const Outputs naive = run(q, k, v, dout, options_for(r, AttentionImpl::naive), r.dtype);
  const Outputs ref = low ? reference(r, B, q, k, v, dout) : naive;
  for (int i = 0; i < 4; ++i) {
    res.flash[i] = compare(flash.t[i], ref.t[i]);
    if (low) res.naive[i] = compare(naive.t[i], ref.t[i]);
    res.worst = std::max(res.worst, res.flash[i].rel_l2);
  }
  res.bound = attention_check_bound(r.dtype, device);
  res.ok = res.worst <= res.bound;  // NaN (inf) fails
  return res;
}

// Central differences with step 3e-5, where the truncation error (step squared) and the
// rounding error (1e-16 |L| / step) of the fp64 losses balance. The error of a check is taken
// relative to |grad| |dir| over the tile, the largest the directional derivative can be (the
// derivative itself can be near zero). The bound is about 3x the worst of the 18 checks on
// the CPU (2.8e-11); the CUDA kernels round in another order but the rounding of the losses
// is of the same size.
FiniteDifferenceResult attention_finite_difference_check(Device device, int64_t D) {
  FiniteDifferenceResult res;
  res.Nq = 150, res.Nk = 170, res.D = D;
  res.bound = 1e-10;
  Generator g(99);
  const TensorOptions o = TensorOptions(DType::f64).device(device);
  Tensor q = randn({1, res.Nq, 2, D}, o, &g), k = randn({1, res.Nk, 1, D}, o, &g),
         v = randn({1, res.Nk, 1, D}, o, &g), R = randn({1, res.Nq, 2, D}, o, &g);
  AttentionOptions opt;
  opt.causal(true).dropout(0.2).seed(5, 1);
  auto loss = [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    return (scaled_dot_product_attention(a, b, c, opt) * R).sum();
  };
  Tensor ql = q.detach().set_requires_grad(true), kl = k.detach().set_requires_grad(true),
         vl = v.detach().set_requires_grad(true);
  loss(ql, kl, vl).backward();
  const double eps = 3e-5;
  for (char input : {'q', 'k', 'v'}) {
    const Tensor& base = input == 'q' ? q : input == 'k' ? k : v;
    const Tensor grad = input == 'q' ? ql.grad() : input == 'k' ? kl.grad() : vl.grad();
    const std::vector<double> gh = grad.to_vector<double>();
    const int64_t N = base.shape()[1], per_row = base.numel() / N;
    const int64_t tile = input == 'q' ? kBlockMaskTileQ : kBlockMaskTileK;
    for (int64_t row0 = 0; row0 < N; row0 += tile) {
      FiniteDifferenceCheck c;
      c.input = input, c.row0 = row0, c.row1 = std::min(N, row0 + tile);
      // A random direction on the rows of this tile only.
      std::vector<double> d =
          randn(base.shape(), TensorOptions(DType::f64), &g).to_vector<double>();
      double gg = 0, dd = 0;
      for (int64_t e = 0; e < base.numel(); ++e) {
        if (e / per_row < c.row0 || e / per_row >= c.row1) d[size_t(e)] = 0.0;
        else gg += gh[size_t(e)] * gh[size_t(e)], dd += d[size_t(e)] * d[size_t(e)];
      }
      c.scale = std::sqrt(gg * dd);
      const Tensor dir = from_vector<double>(d, base.shape(), o);
      NoGradGuard no_grad;
      auto at = [&](double s) {
        const Tensor x = base + dir * s;
        return (input == 'q' ? loss(x, k, v) : input == 'k' ? loss(q, x, v) : loss(q, k, x))
            .item();
      };
      c.numeric = (at(eps) - at(-eps)) / (2 * eps);
      c.analytic = (grad * dir).sum().item();
      c.rel_error = std::fabs(c.numeric - c.analytic) / c.scale;
      if (std::isnan(c.rel_error)) c.rel_error = std::numeric_limits<double>::infinity();
      res.worst = std::max(res.worst, c.rel_error);
      res.checks.push_back(c);
    }
  }
  res.ok = res.worst <= res.bound;
  return res;
}

}  // namespace fg
