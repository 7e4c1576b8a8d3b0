// The raw neural-network ops on Tensors: softmax / log-softmax, cross-entropy, LayerNorm,
// embedding, dropout, gather / scatter-add, cat and split. Each checks devices, dtypes and
// shapes (throwing fg::Error that names the op and the shapes), makes its inputs contiguous,
// and calls the CPU or CUDA kernel of kernels/kernels.h. No autograd: autograd/functions_nn.cpp
// builds the graph nodes around these.
//
// Out-of-range class targets, embedding ids and gather indices are detected by the kernels,
// which write the first bad position into an int64 flag (host memory on CPU, device memory on
// CUDA); the op reads the flag back and throws an error naming the op, the position, the bad
// value and the valid range.
#include <algorithm>
#include <numeric>

#include "tensor/graph.h"
#include "tensor/ops.h"

namespace fg::ops {

namespace {


void check_defined(const char* op, const Tensor& t, const char* which) {
  FG_CHECK(t.defined(), op, ": the ", which, " tensor is undefined");
}

void check_index_dtype(const char* op, const Tensor& idx, const char* which) {
  FG_CHECK(idx.dtype() == DType::i32 || idx.dtype() == DType::i64, op, ": ", which,
           " must be i32 or i64, got ", dtype_name(idx.dtype()), " ", shape_str(idx.shape()),
           "; convert with .to(DType::i64)");
}

// A floating tensor t read or written at integer indices idx on its device; `which` and
// `idx_which` name them in errors.
void check_floating_and_indices(const char* op, const Tensor& t, const char* which,
                                const Tensor& idx, const char* idx_which) {
  check_defined(op, t, which);
  check_defined(op, idx, idx_which);
  check_same_device(op, {t, idx});
  check_floating(op, t);
  check_index_dtype(op, idx, idx_which);
}

// The int64 flag the kernels report the first bad position into (position + 1; 0 = none).
class BadFlag {
 public:
  // On CUDA the flag is zeroed by a kernel (queued, not a host copy: a CUDA graph can hold it).
  explicit BadFlag(Device d) : dev_(d) {
    if (dev_.is_cuda()) {
      flag_ = zeros({1}, TensorOptions(DType::i64).device(dev_));
      ptr_ = flag_.data<int64_t>();
    } else {
      ptr_ = &host_;
    }
  }
  BadFlag(const BadFlag&) = delete;
  BadFlag& operator=(const BadFlag&) = delete;
  int64_t* ptr() { return ptr_; }
  // The first bad position, or -1 when none (waits for the kernel on CUDA). While a CUDA graph
  // is being captured nothing can be read back, so the check is skipped (tensor/graph.h).
  int64_t first_bad() {
    if (dev_.is_cuda()) {
      if (cuda_graph_capturing()) return -1;
      copy_bytes(&host_, Device::cpu(), ptr_, dev_, sizeof(int64_t));
    }
    return host_ - 1;
  }

 private:
  Device dev_;
  Tensor flag_;
  int64_t host_ = 0;
  int64_t* ptr_ = nullptr;
};

// Element `pos` (row-major) of an integer tensor, read to the host.
int64_t index_value_at(const Tensor& idx, int64_t pos) {
  Tensor flat = reshape(idx, {-1});
  return narrow(flat, 0, pos, 1).to_vector<int64_t>()[0];
}

// "[i, j, k]": the multi-index of row-major position pos in shape s.
std::string position_str(const Shape& s, int64_t pos) {
  Shape ix(s.size());
  for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
    int64_t n = std::max<int64_t>(s[size_t(d)], 1);
    ix[size_t(d)] = pos % n;
    pos /= n;
  }
  return shape_str(ix);
}

// rows x cols view of a contiguous copy of x over its last dim.
struct Rows {
  Tensor t;
  int64_t rows = 0, cols = 0;
};
Rows as_rows(const Tensor& x, const char* op) {
  FG_CHECK(x.dim() >= 1, op, ": needs at least 1 dim, got a 0-d tensor");
  Rows r;
  r.t = contiguous(x);
  r.cols = x.size(x.dim() - 1);
  r.rows = r.cols == 0 ? 0 : x.numel() / r.cols;
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// softmax

static Tensor softmax_impl(const Tensor& x, bool log, const char* op) {
  check_defined(op, x, "input");
  check_floating(op, x);
  Rows r = as_rows(x, op);
  Tensor y = empty(x.shape(), like(x));
  if (x.numel() == 0) return y;
  FG_CALL_KERNEL(x.device(), softmax, x.dtype(), r.rows, r.cols, r.t.data_ptr(), y.data_ptr(), log);
  return y;
}

Tensor softmax(const Tensor& x) { return softmax_impl(x, false, "softmax"); }
Tensor log_softmax(const Tensor& x) { return softmax_impl(x, true, "log_softmax"); }

Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_defined(op, y, "output");
  check_defined(op, gy, "gradient");
  check_same_device(op, {y, gy});
  check_same_dtype(op, {y, gy});
  check_floating(op, y);
  FG_CHECK(y.shape() == gy.shape(), op, ": output ", shape_str(y.shape()), " and gradient ",
           shape_str(gy.shape()), " must have the same shape");
  Rows ry = as_rows(y, op), rg = as_rows(gy, op);
  Tensor gx = empty(y.shape(), like(y));
  if (y.numel() == 0) return gx;
  FG_CALL_KERNEL(y.device(), softmax_backward, y.dtype(), ry.rows, ry.cols, ry.t.data_ptr(),
             rg.t.data_ptr(), gx.data_ptr(), log);
  return gx;
}

// ---------------------------------------------------------------------------------------
// cross-entropy

static void check_cross_entropy_args(const char* op, const Tensor& logits,
                                     const Tensor& targets) {
  check_floating_and_indices(op, logits, "logits", targets, "targets");
  FG_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0), op,
           ": expected logits [N, C] and targets [N], got logits ", shape_str(logits.shape()),
           " and targets ", shape_str(targets.shape()));
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     int64_t* count) {
  const char* op = "cross_entropy";
  check_cross_entropy_args(op, logits, targets);
  int64_t rows = logits.size(0), cols = logits.size(1);
  Tensor x = contiguous(logits), t = contiguous(targets);
  Tensor losses = empty({rows}, TensorOptions(DType::f32).device(logits.device()));
  BadFlag bad(logits.device());
  if (rows > 0) {
    FG_CHECK(cols > 0, op, ": logits ", shape_str(logits.shape()), " have no classes");
    FG_CALL_KERNEL(logits.device(), cross_entropy, x.dtype(), t.dtype(), rows, cols, x.data_ptr(),
               t.data_ptr(), ignore_index, static_cast<float*>(losses.data_ptr()), bad.ptr());
  }
  int64_t first = bad.first_bad();
  if (first >= 0)
    throw Error(str(op, ": target ", index_value_at(t, first), " at row ", first,
                    " is out of range [0, ", cols, ") for logits ", shape_str(logits.shape()),
                    "; targets must be class indices below the number of classes, or "
                    "ignore_index (",
                    ignore_index, ")"));
  // The rows that count towards the mean: those whose target is not ignore_index.
  std::vector<int64_t> host_targets = t.to_vector<int64_t>();
  int64_t n = 0;
  for (int64_t v : host_targets) n += v != ignore_index;
  if (count) *count = n;
  // Every row ignored: the loss is 0 (PyTorch gives NaN), so a batch of padding trains
  // nothing rather than poisoning the weights; its gradient is 0 as well.
  if (n == 0) return zeros({}, TensorOptions(DType::f32).device(logits.device()));
  return mul_scalar(sum(losses), 1.0 / double(n));
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                              const Tensor& grad_scale) {
  const char* op = "cross_entropy_backward";
  check_cross_entropy_args(op, logits, targets);
  check_defined(op, grad_scale, "grad_scale");
  check_same_device(op, {logits, grad_scale});
  FG_CHECK(grad_scale.dtype() == DType::f32 && grad_scale.numel() == 1, op,
           ": grad_scale must be a one-element f32 tensor, got ", dtype_name(grad_scale.dtype()),
           " ", shape_str(grad_scale.shape()));
  Tensor x = contiguous(logits), t = contiguous(targets), s = contiguous(grad_scale);
  Tensor g = empty(logits.shape(), like(logits));
  if (logits.numel() == 0) return g;
  FG_CALL_KERNEL(logits.device(), cross_entropy_backward, x.dtype(), t.dtype(), logits.size(0),
             logits.size(1), x.data_ptr(), t.data_ptr(), ignore_index,
             static_cast<const float*>(s.data_ptr()), g.data_ptr());
  return g;
}

// ---------------------------------------------------------------------------------------
// LayerNorm

static void check_affine(const char* op, const Tensor& x, const Tensor& p, const char* which) {
  if (!p.defined()) return;
  check_same_device(op, {x, p});
  check_same_dtype(op, {x, p});
  int64_t C = x.size(x.dim() - 1);
  FG_CHECK(p.dim() == 1 && p.size(0) == C, op, ": ", which, " must have shape [", C,
           "] (the last dim of the input ", shape_str(x.shape()), "), got ",
           shape_str(p.shape()));
}

LayerNormResult layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const char* op = "layer_norm";
  check_defined(op, x, "input");
  check_floating(op, x);
  FG_CHECK(x.dim() >= 1, op, ": needs at least 1 dim, got a 0-d tensor");
  check_affine(op, x, w, "weight");
  check_affine(op, x, b, "bias");
  FG_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  Rows r = as_rows(x, op);
  Tensor wc = w.defined() ? contiguous(w) : Tensor();
  Tensor bc = b.defined() ? contiguous(b) : Tensor();
  LayerNormResult res;
  res.y = empty(x.shape(), like(x));
  TensorOptions f32 = TensorOptions(DType::f32).device(x.device());
  res.mean = empty({r.rows}, f32);
  res.rstd = empty({r.rows}, f32);
  if (x.numel() == 0) return res;
  FG_CALL_KERNEL(x.device(), layer_norm, x.dtype(), r.rows, r.cols, r.t.data_ptr(),
             wc.defined() ? wc.data_ptr() : nullptr, bc.defined() ? bc.data_ptr() : nullptr, eps,
             res.y.data_ptr(), static_cast<float*>(res.mean.data_ptr()),
             static_cast<float*>(res.rstd.data_ptr()));
  return res;
}

LayerNormGrads layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                   const Tensor& mean, const Tensor& rstd, bool need_wb) {
  const char* op = "layer_norm_backward";
  check_defined(op, gy, "gradient");
  check_defined(op, x, "input");
  check_defined(op, mean, "mean");
  check_defined(op, rstd, "rstd");
  check_same_device(op, {gy, x, w, mean, rstd});
  check_same_dtype(op, {gy, x});
  check_floating(op, x);
  check_affine(op, x, w, "weight");
  FG_CHECK(gy.shape() == x.shape(), op, ": gradient ", shape_str(gy.shape()), " and input ",
           shape_str(x.shape()), " must have the same shape");
  Rows rx = as_rows(x, op), rg = as_rows(gy, op);
  FG_CHECK(mean.dtype() == DType::f32 && rstd.dtype() == DType::f32 &&
               mean.numel() == rx.rows && rstd.numel() == rx.rows,
           op, ": mean and rstd must be f32 with ", rx.rows, " elements, got ",
           dtype_name(mean.dtype()), " ", shape_str(mean.shape()), " and ",
           dtype_name(rstd.dtype()), " ", shape_str(rstd.shape()));
  Tensor m = contiguous(mean), rs = contiguous(rstd);
  Tensor wc = w.defined() ? contiguous(w) : Tensor();
  LayerNormGrads g;
  g.gx = empty(x.shape(), like(x));
  if (need_wb) {
    g.gw = empty({rx.cols}, like(x));
    g.gb = empty({rx.cols}, like(x));
  }
  if (rx.cols == 0) return g;
  Tensor ws = workspace(x.device(), FG_CALL_KERNEL(x.device(), layer_norm_backward_workspace,
                                                     x.dtype(), rx.rows, rx.cols));
  FG_CALL_KERNEL(x.device(), layer_norm_backward, x.dtype(), rx.rows, rx.cols, rg.t.data_ptr(),
             rx.t.data_ptr(), wc.defined() ? wc.data_ptr() : nullptr,
             static_cast<const float*>(m.data_ptr()), static_cast<const float*>(rs.data_ptr()),
             g.gx.data_ptr(), need_wb ? g.gw.data_ptr() : nullptr,
             need_wb ? g.gb.data_ptr() : nullptr, ws.defined() ? ws.data_ptr() : nullptr);
  return g;
}

// ---------------------------------------------------------------------------------------
// embedding

Tensor embedding(const Tensor& weight, const Tensor& idx) {
  const char* op = "embedding";
  check_floating_and_indices(op, weight, "weight", idx, "indices");
  FG_CHECK(weight.dim() == 2, op, ": weight must be [vocab, dim], got ",
           shape_str(weight.shape()));
  int64_t vocab = weight.size(0), dim = weight.size(1);
  Tensor w = contiguous(weight), ix = contiguous(idx);
  Shape out_shape = idx.shape();
  out_shape.push_back(dim);
  Tensor out = empty(out_shape, like(weight));
  int64_t rows = idx.numel();
  if (rows == 0) return out;
  BadFlag bad(weight.device());
  FG_CALL_KERNEL(weight.device(), embedding, w.dtype(), ix.dtype(), rows, dim, vocab, w.data_ptr(),
             ix.data_ptr(), out.data_ptr(), bad.ptr());
  int64_t first = bad.first_bad();
  if (first >= 0)
    throw Error(str(op, ": index ", index_value_at(ix, first), " at position ",
                    position_str(idx.shape(), first), " of indices ", shape_str(idx.shape()),
                    " is out of range [0, ", vocab, ") for weight ", shape_str(weight.shape()),
                    "; ids must be below the vocabulary size"));
  return out;
}

void kv_cache_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                    const Tensor& v, const Tensor& positions) {
  const char* op = "kv_cache_write";
  check_defined(op, k_cache, "key cache");
  check_defined(op, v_cache, "value cache");
  check_defined(op, k, "new keys");
  check_defined(op, v, "new values");
  check_defined(op, positions, "positions");
  check_same_device(op, {k_cache, v_cache, k, v, positions});
  FG_CHECK(k_cache.dim() == 4 && k_cache.is_contiguous() && v_cache.is_contiguous() &&
               v_cache.shape() == k_cache.shape() && v_cache.dtype() == k_cache.dtype(),
           op, ": the caches must be contiguous [batch, capacity, heads, head_dim] tensors of one "
           "shape and dtype, got ", shape_str(k_cache.shape()), " and ", shape_str(v_cache.shape()));
  const int64_t B = k_cache.size(0), cap = k_cache.size(1), row = k_cache.size(2) * k_cache.size(3);
  for (const Tensor* t : {&k, &v})
    FG_CHECK(t->dim() == 4 && t->size(0) == B && t->size(2) == k_cache.size(2) &&
                 t->size(3) == k_cache.size(3) && t->dtype() == k_cache.dtype(),
             op, ": new rows ", dtype_name(t->dtype()), " ", shape_str(t->shape()),
             " do not fit the cache ", dtype_name(k_cache.dtype()), " ", shape_str(k_cache.shape()),
             " (expected [", B, ", T, ", k_cache.size(2), ", ", k_cache.size(3), "] of its dtype)");
  FG_CHECK(positions.dtype() == DType::i32 && positions.dim() == 1 && positions.size(0) == B, op,
           ": positions must be i32 [", B, "], got ", dtype_name(positions.dtype()), " ",
           shape_str(positions.shape()));
  // Each new row's heads must be contiguous (views of a fused projection are), and the keys
  // and values laid out alike (one launch reads both with the same strides).
  auto rows_ok = [](const Tensor& t) { return t.stride(3) == 1 && t.stride(2) == t.size(3); };
  Tensor kk = k, vv = v;
  if (!rows_ok(kk) || !rows_ok(vv) || kk.size(1) != vv.size(1) || kk.stride(0) != vv.stride(0) ||
      kk.stride(1) != vv.stride(1))
    kk = contiguous(k), vv = contiguous(v);
  FG_CHECK(kk.shape() == vv.shape(), op, ": new keys ", shape_str(k.shape()), " and values ",
           shape_str(v.shape()), " must have one shape");
  const Tensor pos = contiguous(positions);
  const int64_t T = kk.size(1);
  if (B == 0 || T == 0 || row == 0) return;
  BadFlag bad(k_cache.device());
  FG_CALL_KERNEL(k_cache.device(), kv_cache_write, k_cache.dtype(), B, T, row, cap, kk.data_ptr(),
                 vv.data_ptr(), kk.stride(0), kk.stride(1), pos.data<int32_t>(), k_cache.data_ptr(),
                 v_cache.data_ptr(), bad.ptr());
  const int64_t first = bad.first_bad();
  if (first >= 0)
    throw Error(str(op, ": entry ", first, " writes ", T, " rows at position ",
                    index_value_at(pos, first), ": positions must lie in [0, ", cap - T,
                    "] for the cache's capacity ", cap, "; start a new window or use a larger "
                    "cache"));
}

Tensor embedding_backward(const Tensor& gout, const Tensor& idx, int64_t vocab) {
  const char* op = "embedding_backward";
  check_floating_and_indices(op, gout, "gradient", idx, "indices");
  FG_CHECK(gout.dim() == idx.dim() + 1 &&
               Shape(gout.shape().begin(), gout.shape().end() - 1) == idx.shape(),
           op, ": gradient ", shape_str(gout.shape()), " must be the indices' shape ",
           shape_str(idx.shape()), " plus the embedding dim");
  FG_CHECK(vocab >= 0, op, ": vocab must be >= 0, got ", vocab);
  int64_t dim = gout.size(gout.dim() - 1);
  Tensor g = contiguous(gout), ix = contiguous(idx);
  Tensor gw = zeros({vocab, dim}, like(gout));
  if (idx.numel() == 0 || dim == 0) return gw;
  Tensor ws = workspace(gout.device(), FG_CALL_KERNEL(gout.device(), embedding_backward_workspace,
                                                        g.dtype(), vocab, dim));
  FG_CALL_KERNEL(gout.device(), embedding_backward, g.dtype(), ix.dtype(), idx.numel(), dim, vocab,
             g.data_ptr(), ix.data_ptr(), gw.data_ptr(), ws.defined() ? ws.data_ptr() : nullptr);
  return gw;
}

// ---------------------------------------------------------------------------------------
// dropout

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  return dropout_add(x, Tensor(), p, seed, offset);
}

Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, uint64_t seed,
                   uint64_t offset) {
  const char* op = residual.defined() ? "dropout_add" : "dropout";
  check_defined(op, x, "input");
  check_floating(op, x);
  FG_CHECK(p >= 0.0 && p < 1.0, op, ": drop probability must be in [0, 1), got ", p);
  Tensor rc;
  if (residual.defined()) {
    check_same_device(op, {x, residual});
    check_same_dtype(op, {x, residual});
    FG_CHECK(residual.shape() == x.shape(), op, ": residual ", shape_str(residual.shape()),
             " and input ", shape_str(x.shape()), " must have the same shape");
    rc = contiguous(residual);
  }
  Tensor xc = contiguous(x);
  Tensor y = empty(x.shape(), like(x));
  if (x.numel() == 0) return y;
  FG_CALL_KERNEL(x.device(), dropout, x.dtype(), x.numel(), xc.data_ptr(),
                 rc.defined() ? rc.data_ptr() : nullptr, y.data_ptr(), p, seed, offset);
  return y;
}

// ---------------------------------------------------------------------------------------
// gather / scatter_add

namespace {
struct GatherDims {
  int64_t dim = 0, outer = 1, len_in = 0, len_idx = 0, inner = 1;
};
// index must have the input's shape except along dim (its length there is free).
GatherDims gather_dims(const char* op, const Shape& in_shape, int64_t dim_in,
                       const Tensor& index) {
  int64_t nd = int64_t(in_shape.size());
  FG_CHECK(nd >= 1, op, ": needs at least 1 dim, got a 0-d tensor");
  int64_t dim = dim_in < 0 ? dim_in + nd : dim_in;
  FG_CHECK(dim >= 0 && dim < nd, op, ": dim ", dim_in, " is out of range for ", nd, "-d input ",
           shape_str(in_shape));
  bool ok = index.dim() == nd;
  for (int64_t d = 0; ok && d < nd; ++d)
    if (d != dim && index.size(d) != in_shape[size_t(d)]) ok = false;
  FG_CHECK(ok, op, ": index ", shape_str(index.shape()), " must have the input's shape ",
           shape_str(in_shape), " in every dim but dim ", dim);
  GatherDims g;
  g.dim = dim;
  for (int64_t d = 0; d < dim; ++d) g.outer *= in_shape[size_t(d)];
  for (int64_t d = dim + 1; d < nd; ++d) g.inner *= in_shape[size_t(d)];
  g.len_in = in_shape[size_t(dim)];
  g.len_idx = index.size(dim);
  return g;
}
}  // namespace

Tensor gather(const Tensor& t, int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_defined(op, t, "input");
  check_defined(op, index, "index");
  check_same_device(op, {t, index});
  check_index_dtype(op, index, "index");
  GatherDims g = gather_dims(op, t.shape(), dim, index);
  // Contiguous tensors are already [outer, len, inner] in memory.
  Tensor tc = contiguous(t), ic = contiguous(index);
  Tensor out = empty(index.shape(), like(t));
  if (out.numel() == 0) return out;
  FG_CHECK(g.len_in > 0, op, ": cannot gather from an empty dim ", g.dim, " of ",
           shape_str(t.shape()));
  BadFlag bad(t.device());
  FG_CALL_KERNEL(t.device(), gather, t.dtype(), ic.dtype(), g.outer, g.len_in, g.len_idx, g.inner,
             tc.data_ptr(), ic.data_ptr(), out.data_ptr(), bad.ptr());
  int64_t first = bad.first_bad();
  if (first >= 0)
    throw Error(str(op, ": index ", index_value_at(ic, first), " at position ",
                    position_str(index.shape(), first), " of index ", shape_str(index.shape()),
                    " is out of range [0, ", g.len_in, ") for dim ", g.dim, " of input ",
                    shape_str(t.shape())));
  return out;
}

Tensor scatter_add_zeros(const Tensor& gout, int64_t dim, const Tensor& index,
                         const Shape& in_shape) {
  const char* op = "scatter_add";
  check_floating_and_indices(op, gout, "gradient", index, "index");
  FG_CHECK(gout.shape() == index.shape(), op, ": source ", shape_str(gout.shape()),
           " and index ", shape_str(index.shape()), " must have the same shape");
  GatherDims g = gather_dims(op, in_shape, dim, index);
  Tensor gc = contiguous(gout), ic = contiguous(index);
  Tensor gin = zeros(in_shape, like(gout));
  if (gout.numel() == 0) return gin;
  Tensor ws = workspace(gout.device(), FG_CALL_KERNEL(gout.device(), scatter_add_workspace,
                                                        gout.dtype(), gin.numel()));
  FG_CALL_KERNEL(gout.device(), scatter_add, gout.dtype(), ic.dtype(), g.outer, g.len_in, g.len_idx,
             g.inner, gc.data_ptr(), ic.data_ptr(), gin.data_ptr(),
             ws.defined() ? ws.data_ptr() : nullptr);
  return gin;
}

// ---------------------------------------------------------------------------------------
// cat / split

Tensor cat(const std::vector<Tensor>& ts, int64_t dim) {
  const char* op = "cat";
  FG_CHECK(!ts.empty(), op, ": needs at least one tensor");
  for (const Tensor& t : ts) check_defined(op, t, "input");
  check_same_device(op, ts);
  check_same_dtype(op, ts);
  const Tensor& first = ts[0];
  int64_t nd = first.dim();
  FG_CHECK(nd >= 1, op, ": cannot concatenate 0-d tensors; unsqueeze them first");
  int64_t d = first.wrap_dim(dim, op);
  Shape out_shape = first.shape();
  out_shape[size_t(d)] = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    bool ok = t.dim() == nd;
    for (int64_t k = 0; ok && k < nd; ++k)
      if (k != d && t.size(k) != first.size(k)) ok = false;
    FG_CHECK(ok, op, ": tensor ", i, " has shape ", shape_str(t.shape()),
             " but tensor 0 has shape ", shape_str(first.shape()),
             "; shapes must match in every dim except dim ", d);
    out_shape[size_t(d)] += t.size(d);
  }
  Tensor out = empty(out_shape, like(first));
  int64_t off = 0;
  for (const Tensor& t : ts) {
    int64_t len = t.size(d);
    if (len > 0) {
      Tensor dst = narrow(out, d, off, len);
      copy_(dst, t);
    }
    off += len;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim) {
  const char* op = "split";
  check_defined(op, t, "input");
  int64_t d = t.wrap_dim(dim, op);
  int64_t total = 0;
  for (int64_t s : sizes) {
    FG_CHECK(s >= 0, op, ": sizes must be >= 0, got ", shape_str(sizes));
    total += s;
  }
  FG_CHECK(total == t.size(d), op, ": sizes ", shape_str(sizes), " sum to ", total,
           " but dim ", d, " of ", shape_str(t.shape()), " has ", t.size(d));
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(t, d, off, s));
    off += s;
  }
  return out;
}

}  // namespace fg::ops
