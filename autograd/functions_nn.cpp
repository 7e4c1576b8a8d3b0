// The differentiable matmul and neural-network ops (softmax, log-softmax, cross-entropy,
// LayerNorm, embedding, dropout, gather) and the multi-tensor views cat / split / chunk. Each
// runs its raw op (tensor/ops_matmul.cpp, tensor/ops_nn.cpp) and records a node whose backward
// is written with raw ops; the fused backward kernels (softmax, cross-entropy, LayerNorm) are
// called directly.
#include <algorithm>

#include "autograd/functions.h"

namespace fg {

// ---- matmul ----
// With a2 = a (or a as a row [1, K] when 1-D) and b2 = b (or a column [K, 1]), and g2 the
// output gradient reshaped to batch + [M, N]:  ga = g2 @ b2^T,  gb = a2^T @ g2, each summed
// over the batch dims its operand was broadcast along (sum_to) and reshaped back. The
// transposes are views; ops::matmul hands them to the GEMM as transpose flags, not copies.
Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor y = ops::matmul(a, b);
  return record("MatmulBackward", {a, b}, y, {a, b},
                [](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                   const std::vector<bool>& needs) {
                  const Tensor& a = saved[0];
                  const Tensor& b = saved[1];
                  Tensor a2 = a.dim() == 1 ? ops::unsqueeze(a, 0) : a;
                  Tensor b2 = b.dim() == 1 ? ops::unsqueeze(b, 1) : b;
                  int64_t M = a2.size(a2.dim() - 2), K = a2.size(a2.dim() - 1);
                  int64_t N = b2.size(b2.dim() - 1);
                  Shape batch = broadcast_shapes(Shape(a2.shape().begin(), a2.shape().end() - 2),
                                                 Shape(b2.shape().begin(), b2.shape().end() - 2),
                                                 "matmul backward");
                  Shape g_shape = batch;
                  g_shape.push_back(M);
                  g_shape.push_back(N);
                  Tensor g2 = ops::reshape(g[0], g_shape);
                  Tensor ga, gb;
                  if (needs[0]) {
                    Tensor t = ops::matmul(g2, ops::transpose(b2, -1, -2));
                    ga = ops::reshape(ops::sum_to(t, a2.shape()), a.shape());
                  }
                  if (needs[1]) {
                    Tensor t;
                    if (b2.dim() == 2 && a2.dim() > 2) {
                      // b shared by every batch entry (a Linear layer): one [K, rows] @
                      // [rows, N] product instead of a batch of them summed afterwards.
                      int64_t rows = shape_numel(batch) * M;
                      Tensor af = ops::reshape(a2, {rows, K});
                      Tensor gf = ops::reshape(g2, {rows, N});
                      t = ops::matmul(ops::transpose(af, 0, 1), gf);
                    } else {
                      t = ops::sum_to(ops::matmul(ops::transpose(a2, -1, -2), g2), b2.shape());
                    }
                    gb = ops::reshape(t, b.shape());
                  }
                  return std::vector<Tensor>{ga, gb};
                });
}

// ---- softmax / log_softmax ----
static void check_last_dim(const char* op, const Tensor& x, int64_t dim) {
  FG_CHECK(x.defined(), op, ": the input tensor is undefined");
  FG_CHECK(x.dim() >= 1, op, ": needs at least 1 dim, got a 0-d tensor");
  int64_t d = x.wrap_dim(dim, op);
  FG_CHECK(d == x.dim() - 1, op, ": only the last dim is supported (dim ", dim, " of ",
           shape_str(x.shape()), "); transpose the dim to the end first");
}

Tensor softmax(const Tensor& x, int64_t dim) {
  check_last_dim("softmax", x, dim);
  Tensor y = ops::softmax(x);
  return record("SoftmaxBackward", {x}, y, {y},
                [](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                   const std::vector<bool>&) {
                  return std::vector<Tensor>{ops::softmax_backward(saved[0], g[0], false)};
                });
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  check_last_dim("log_softmax", x, dim);
  Tensor y = ops::log_softmax(x);
  return record("LogSoftmaxBackward", {x}, y, {y},
                [](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                   const std::vector<bool>&) {
                  return std::vector<Tensor>{ops::softmax_backward(saved[0], g[0], true)};
                });
}

// ---- cross_entropy ----
// Logits [..., C] and targets [...] are flattened to [N, C] and [N]. The loss is the mean over
// counted rows, so the backward scales (softmax - onehot) by dL/dloss / count; the count is
// fixed in the forward and captured by the node.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* op = "cross_entropy";
  FG_CHECK(logits.defined() && targets.defined(), op, ": logits or targets are undefined");
  FG_CHECK(logits.dim() >= 1, op, ": logits must be [..., C], got a 0-d tensor");
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  FG_CHECK(targets.shape() == lead, op, ": targets ", shape_str(targets.shape()),
           " must have the logits' shape without the class dim, ", shape_str(lead),
           " (logits ", shape_str(logits.shape()), ")");
  int64_t C = logits.size(logits.dim() - 1);
  Tensor x2 = ops::reshape(logits, {-1, C});
  Tensor t1 = ops::reshape(targets, {-1});
  int64_t count = 0;
  Tensor loss = ops::cross_entropy(x2, t1, ignore_index, &count);
  Shape logits_shape = logits.shape();
  return record("CrossEntropyBackward", {logits}, loss, {x2, t1},
                [ignore_index, count, logits_shape](const std::vector<Tensor>& g,
                                                    const std::vector<Tensor>& saved,
                                                    const std::vector<bool>&) {
                  Tensor scale = ops::mul_scalar(ops::to_dtype(g[0], DType::f32),
                                                 count > 0 ? 1.0 / double(count) : 0.0);
                  Tensor gx = ops::cross_entropy_backward(saved[0], saved[1], ignore_index,
                                                          scale);
                  return std::vector<Tensor>{ops::reshape(gx, logits_shape)};
                });
}

// ---- linear ----
// The backward takes the GELU's derivative at the saved pre-activation (gp = dL/d(x w^T + b)),
// then gx = gp weight, and gw = gp^T x with gb in the same GEMM (its bias-gradient epilogue).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu) {
  // pre only where a backward will read it (not under no_grad, e.g. when sampling).
  ops::LinearResult r = ops::linear(x, weight, bias, gelu, any_requires_grad({x, weight, bias}));
  return record(gelu ? "LinearGeluBackward" : "LinearBackward", {x, weight, bias}, r.y,
                {x, weight, r.pre},
                [gelu](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                       const std::vector<bool>& needs) {
                  const Tensor& x = saved[0];
                  const Tensor& w = saved[1];
                  Tensor gp = gelu ? ops::binary(BinaryOp::gelu_backward, g[0], saved[2]) : g[0];
                  Tensor gx, gw, gb;
                  if (needs[0]) gx = ops::linear_input_grad(gp, w, Tensor(), false).gx;
                  if (needs[1] || needs[2]) {
                    ops::LinearGrads lg = ops::linear_weight_grad(gp, x, needs[2]);
                    if (needs[1]) gw = lg.gw;
                    if (needs[2]) gb = lg.gb;
                  }
                  return std::vector<Tensor>{gx, gw, gb};
                });
}

// Saved: x, w1 and pre = x w1^T + b1 where x, w1 or b1 need a gradient; w2; the hidden
// h = gelu(pre) where w2 needs one.
Tensor linear_gelu_linear(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2,
                          const Tensor& b2) {
  const bool grad_in = any_requires_grad({x, w1, b1}), grad_w2 = any_requires_grad({w2});
  ops::LinearResult hidden = ops::linear(x, w1, b1, /*gelu=*/true, /*keep_pre=*/grad_in);
  ops::LinearResult out = ops::linear(hidden.y, w2, b2, /*gelu=*/false);
  return record("LinearGeluLinearBackward", {x, w1, b1, w2, b2}, out.y,
                {grad_in ? x : Tensor(), grad_in ? w1 : Tensor(), w2,
                 grad_w2 ? hidden.y : Tensor(), hidden.pre},
                [](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                   const std::vector<bool>& needs) {
                  const Tensor &x = saved[0], &w1 = saved[1], &w2 = saved[2];
                  const Tensor &h = saved[3], &pre = saved[4];
                  std::vector<Tensor> grads(5);
                  if (needs[3] || needs[4]) {
                    ops::LinearGrads l2 = ops::linear_weight_grad(g[0], h, needs[4]);
                    grads[3] = needs[3] ? l2.gw : Tensor();
                    grads[4] = needs[4] ? l2.gb : Tensor();
                  }
                  if (!needs[0] && !needs[1] && !needs[2]) return grads;
                  // dL/dpre = (g w2) gelu'(pre), with b1's gradient from the same GEMM.
                  ops::LinearInputGrads gp = ops::linear_input_grad(g[0], w2, pre, needs[2]);
                  if (needs[2]) grads[2] = gp.gb;
                  if (needs[0]) grads[0] = ops::linear_input_grad(gp.gx, w1, Tensor(), false).gx;
                  if (needs[1]) grads[1] = ops::linear_weight_grad(gp.gx, x, false).gw;
                  return grads;
                });
}

// ---- layer_norm ----
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  ops::LayerNormResult r = ops::layer_norm(x, weight, bias, eps);
  return record("LayerNormBackward", {x, weight, bias}, r.y, {x, weight, r.mean, r.rstd},
                [](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                   const std::vector<bool>& needs) {
                  bool need_wb = needs[1] || needs[2];
                  ops::LayerNormGrads lg = ops::layer_norm_backward(
                      g[0], saved[0], saved[1], saved[2], saved[3], need_wb);
                  return std::vector<Tensor>{needs[0] ? lg.gx : Tensor(),
                                             needs[1] ? lg.gw : Tensor(),
                                             needs[2] ? lg.gb : Tensor()};
                });
}

// ---- embedding ----
Tensor embedding(const Tensor& weight, const Tensor& indices) {
  Tensor y = ops::embedding(weight, indices);
  int64_t vocab = weight.size(0);
  return record("EmbeddingBackward", {weight}, y, {indices},
                [vocab](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                        const std::vector<bool>&) {
                  return std::vector<Tensor>{ops::embedding_backward(g[0], saved[0], vocab)};
                });
}

// ---- dropout ----
// The mask is never stored: the backward regenerates it from the same (seed, offset), so the
// gradient is dropout(g) with the forward's mask, scale included.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  FG_CHECK(x.defined(), "dropout: the input tensor is undefined");
  FG_CHECK(p >= 0.0 && p < 1.0, "dropout: drop probability must be in [0, 1), got ", p);
  if (p == 0.0 || !training) return x;
  Generator& g = gen ? *gen : default_generator();
  uint64_t seed = g.seed(), offset = g.next_offset();
  Tensor y = ops::dropout(x, p, seed, offset);
  return record("DropoutBackward", {x}, y, {},
                [p, seed, offset](const std::vector<Tensor>& grads, const std::vector<Tensor>&,
                                  const std::vector<bool>&) {
                  return std::vector<Tensor>{ops::dropout(grads[0], p, seed, offset)};
                });
}

// residual + dropout(x): the gradient reaches the residual unchanged and x through the mask.
Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, bool training,
                   Generator* gen) {
  FG_CHECK(x.defined(), "dropout_add: the input tensor x is undefined");
  FG_CHECK(residual.defined(), "dropout_add: the residual tensor is undefined");
  FG_CHECK(p >= 0.0 && p < 1.0, "dropout_add: drop probability must be in [0, 1), got ", p);
  // The same rules in evaluation as in training (no broadcasting, no type promotion).
  FG_CHECK(x.shape() == residual.shape() && x.dtype() == residual.dtype(),
           "dropout_add: x ", dtype_name(x.dtype()), " ", shape_str(x.shape()), " and residual ",
           dtype_name(residual.dtype()), " ", shape_str(residual.shape()),
           " must have the same shape and dtype");
  if (p == 0.0 || !training) return add(residual, x);
  Generator& g = gen ? *gen : default_generator();
  uint64_t seed = g.seed(), offset = g.next_offset();
  Tensor y = ops::dropout_add(x, residual, p, seed, offset);
  return record("DropoutAddBackward", {x, residual}, y, {},
                [p, seed, offset](const std::vector<Tensor>& grads, const std::vector<Tensor>&,
                                  const std::vector<bool>& needs) {
                  return std::vector<Tensor>{
                      needs[0] ? ops::dropout(grads[0], p, seed, offset) : Tensor(),
                      needs[1] ? grads[0] : Tensor()};
                });
}

// ---- gather ----
Tensor gather(const Tensor& t, int64_t dim, const Tensor& index) {
  Tensor y = ops::gather(t, dim, index);
  Shape in_shape = t.shape();
  return record("GatherBackward", {t}, y, {index},
                [dim, in_shape](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                                const std::vector<bool>&) {
                  return std::vector<Tensor>{ops::scatter_add_zeros(g[0], dim, saved[0],
                                                                    in_shape)};
                });
}

// ---- cat / split / chunk ----
Tensor cat(const std::vector<Tensor>& ts, int64_t dim) {
  Tensor y = ops::cat(ts, dim);
  std::vector<int64_t> sizes;
  int64_t d = ts[0].wrap_dim(dim, "cat");
  for (const Tensor& t : ts) sizes.push_back(t.size(d));
  return record("CatBackward", ts, y, {},
                [sizes, d](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                           const std::vector<bool>& needs) {
                  std::vector<Tensor> parts = ops::split(g[0], sizes, d);
                  for (size_t i = 0; i < parts.size(); ++i)
                    if (!needs[i]) parts[i] = Tensor();
                  return parts;
                });
}

std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim) {
  std::vector<Tensor> parts = ops::split(t, sizes, dim);
  int64_t d = t.wrap_dim(dim, "split");
  // Gradients of unused pieces arrive as zeros (FunctionNode fills them in).
  return record("SplitBackward", {t}, parts, {},
                [d](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                    const std::vector<bool>&) {
                  return std::vector<Tensor>{ops::cat(g, d)};
                });
}

// As PyTorch: pieces of ceil(size / chunks) along dim, the last one smaller (so there may be
// fewer than `chunks` pieces).
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim) {
  FG_CHECK(t.defined(), "chunk: the input tensor is undefined");
  FG_CHECK(chunks > 0, "chunk: chunks must be > 0, got ", chunks);
  int64_t d = t.wrap_dim(dim, "chunk");
  int64_t n = t.size(d);
  int64_t step = std::max<int64_t>(1, (n + chunks - 1) / chunks);
  std::vector<int64_t> sizes;
  for (int64_t off = 0; off < n; off += step) sizes.push_back(std::min(step, n - off));
  if (sizes.empty()) sizes.push_back(0);
  return split(t, sizes, d);
}

}  // namespace fg
