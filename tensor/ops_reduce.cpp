// Raw reductions on Tensors: sum, mean, amax over any set of dims, argmax along one dim, and
// sum_to (the adjoint of broadcasting, used by every broadcasting backward).
//
// The kernels (kernels/*/reduce.*) reduce the middle dim of a contiguous [outer, len, inner]
// array. A multi-dim reduction makes the input contiguous once, merges runs of adjacent
// reduced dims into one `len`, and reduces those runs one after the other, last first; each
// step leaves a contiguous result with size-1 dims in place of the reduced ones, so the next
// step needs no copy. Sums and means of 16-bit inputs keep f32 results between steps (the
// kernel returns its float accumulator), so partial sums are never rounded to 16 bits; the
// result is rounded once at the end.
#include <algorithm>
#include <cmath>

#include "tensor/ops.h"

namespace fg::ops {
namespace {


bool is_16bit(DType t) { return t == DType::bf16 || t == DType::f16; }

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string r = "{";
  for (size_t i = 0; i < dims.size(); ++i) r += (i ? ", " : "") + std::to_string(dims[i]);
  return r + "}";
}

// Which dims of t are reduced: all when dims is empty. Negative dims wrap; repeats throw.
std::vector<bool> reduced_mask(const Tensor& t, const std::vector<int64_t>& dims,
                               const char* op) {
  std::vector<bool> mask(size_t(t.dim()), dims.empty());
  for (int64_t d : dims) {
    int64_t w = t.wrap_dim(d, op);
    FG_CHECK(!mask[size_t(w)], op, ": dim ", d, " appears more than once in dims ",
             dims_str(dims), " for a tensor of shape ", shape_str(t.shape()));
    mask[size_t(w)] = true;
  }
  return mask;
}

// The shape of the result: reduced dims become 1 (keepdim) or disappear.
Shape reduced_shape(const Shape& s, const std::vector<bool>& mask, bool keepdim) {
  Shape r;
  for (size_t d = 0; d < s.size(); ++d) {
    if (!mask[d]) r.push_back(s[d]);
    else if (keepdim) r.push_back(1);
  }
  return r;
}

// Reduces the masked dims of t with `op`; the result has keepdim shape and dtype `out_dtype`
// (t's dtype, or f32 for a 16-bit t when the caller wants unrounded sums).
Tensor reduce_masked(const Tensor& t, const std::vector<bool>& mask, ReduceOp op, bool widen_16bit,
                     const char* name) {
  // Runs of adjacent reduced dims, each [begin, end).
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (!mask[size_t(d)]) continue;
    if (!runs.empty() && runs.back().second == d) runs.back().second = d + 1;
    else runs.push_back({d, d + 1});
  }
  Tensor cur = contiguous(t);
  // A 16-bit sum keeps its float accumulator: the first step writes f32, the rest read it.
  const bool widen = widen_16bit && is_16bit(t.dtype()) && op == ReduceOp::sum;
  if (runs.empty()) {  // nothing to reduce: a copy
    if (widen) return to_dtype(cur, DType::f32);
    return cur.same_storage(t) ? clone(cur) : cur;
  }

  // Last run first, so the earlier runs' positions stay valid in the shrinking shape.
  for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
    Shape s = cur.shape();
    int64_t outer = 1, len = 1, inner = 1;
    for (int64_t d = 0; d < it->first; ++d) outer *= s[size_t(d)];
    for (int64_t d = it->first; d < it->second; ++d) len *= s[size_t(d)];
    for (int64_t d = it->second; d < int64_t(s.size()); ++d) inner *= s[size_t(d)];
    Shape out_shape = s;
    for (int64_t d = it->first; d < it->second; ++d) out_shape[size_t(d)] = 1;
    const DType out_dtype = widen ? DType::f32 : cur.dtype();
    Tensor out = empty(out_shape, TensorOptions(out_dtype).device(cur.device()));
    Tensor ws = workspace(cur.device(), FG_CALL_KERNEL(cur.device(), reduce_workspace, op,
                                                       cur.dtype(), outer, len, inner));
    FG_CALL_KERNEL(cur.device(), reduce, op, cur.dtype(), out_dtype, outer, len, inner,
                   cur.data_ptr(), out.data_ptr(), ws.defined() ? ws.data_ptr() : nullptr);
    cur = out;
  }
  return cur;
}

Tensor finish(const Tensor& r, const Shape& in_shape, const std::vector<bool>& mask,
              bool keepdim) {
  return keepdim ? r : view(r, reduced_shape(in_shape, mask, false));
}

}  // namespace

Tensor sum(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  FG_CHECK(t.defined(), "sum: the input tensor is undefined");
  auto mask = reduced_mask(t, dims, "sum");
  // 16-bit: accumulate across all steps in f32, round once.
  Tensor r = reduce_masked(t, mask, ReduceOp::sum, true, "sum");
  if (r.dtype() != t.dtype()) r = to_dtype(r, t.dtype());
  return finish(r, t.shape(), mask, keepdim);
}

Tensor mean(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  FG_CHECK(t.defined(), "mean: the input tensor is undefined");
  check_floating("mean", t);
  auto mask = reduced_mask(t, dims, "mean");
  int64_t count = 1;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (mask[size_t(d)]) count *= t.size(d);
  Tensor r = reduce_masked(t, mask, ReduceOp::sum, true, "mean");
  // count == 0 gives 0 * inf = NaN, the mean of nothing (as numpy and PyTorch).
  r = mul_scalar(r, count == 0 ? INFINITY : 1.0 / double(count));
  if (r.dtype() != t.dtype()) r = to_dtype(r, t.dtype());
  return finish(r, t.shape(), mask, keepdim);
}

Tensor amax(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  FG_CHECK(t.defined(), "amax: the input tensor is undefined");
  auto mask = reduced_mask(t, dims, "amax");
  for (int64_t d = 0; d < t.dim(); ++d)
    FG_CHECK(!(mask[size_t(d)] && t.size(d) == 0), "amax: cannot take the max over dim ", d,
             " of size 0 (shape ", shape_str(t.shape()), ")");
  FG_CHECK(t.numel() > 0 || !dims.empty(), "amax: cannot take the max of an empty tensor ",
           shape_str(t.shape()));
  Tensor r = reduce_masked(t, mask, ReduceOp::max, false, "amax");
  return finish(r, t.shape(), mask, keepdim);
}

Tensor argmax(const Tensor& t, int64_t dim, bool keepdim) {
  FG_CHECK(t.defined(), "argmax: the input tensor is undefined");
  int64_t d = t.wrap_dim(dim, "argmax");
  FG_CHECK(t.size(d) > 0, "argmax: dim ", dim, " of shape ", shape_str(t.shape()),
           " is empty; there is no maximum");
  Tensor x = contiguous(t);
  int64_t outer = 1, inner = 1, len = t.size(d);
  for (int64_t k = 0; k < d; ++k) outer *= t.size(k);
  for (int64_t k = d + 1; k < t.dim(); ++k) inner *= t.size(k);
  Shape out_shape = t.shape();
  out_shape[size_t(d)] = 1;
  Tensor out = empty(out_shape, TensorOptions(DType::i64).device(t.device()));
  FG_CALL_KERNEL(t.device(), argmax, x.dtype(), outer, len, inner, x.data_ptr(),
                 static_cast<int64_t*>(out.data_ptr()));
  if (keepdim) return out;
  out_shape.erase(out_shape.begin() + d);
  return view(out, out_shape);
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  FG_CHECK(t.defined(), "sum_to: the input tensor is undefined");
  if (t.shape() == shape) return t;
  FG_CHECK(shape.size() <= size_t(t.dim()), "sum_to: cannot sum ", shape_str(t.shape()),
           " down to ", shape_str(shape), " (the target has more dims)");
  size_t lead = size_t(t.dim()) - shape.size();
  std::vector<int64_t> dims;
  for (size_t d = 0; d < lead; ++d) dims.push_back(int64_t(d));
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t have = t.size(int64_t(lead + i));
    FG_CHECK(shape[i] == have || shape[i] == 1, "sum_to: cannot sum ", shape_str(t.shape()),
             " down to ", shape_str(shape), " (dim ", lead + i, ": ", have, " vs ", shape[i],
             "); the target must broadcast to the input");
    if (shape[i] == 1 && have != 1) dims.push_back(int64_t(lead + i));
  }
  if (dims.empty()) return view(contiguous(t), shape);  // only leading size-1 dims differ
  Tensor r = sum(t, dims, true);
  return view(r, shape);
}

}  // namespace fg::ops
