// Shared checks and the strided indexer builder used by every raw op.
#include <algorithm>

#include "tensor/ops.h"

namespace fg {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape r(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(str(op, ": shapes ", shape_str(a), " and ", shape_str(b),
                      " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")"));
    r[i] = da == 1 ? db : da;
  }
  return r;
}

namespace ops {

Tensor workspace(Device d, size_t bytes) {
  if (bytes == 0) return Tensor();
  return empty({int64_t((bytes + 7) / 8)}, TensorOptions(DType::f64).device(d));
}

namespace {
// Throws unless every defined tensor of ts has the first one's `what` (device or dtype); the
// message names the op, both tensors, and how to fix it.
template <typename Get, typename Name>
void check_all_same(const char* op, const std::vector<Tensor>& ts, Get get, Name name,
                    const char* expected, const char* fix) {
  const Tensor* first = nullptr;
  for (const Tensor& t : ts) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
      continue;
    }
    if (get(t) != get(*first))
      throw Error(str(op, ": expected ", expected, ", got ", name(*first), " ",
                      shape_str(first->shape()), " and ", name(t), " ", shape_str(t.shape()),
                      "; ", fix));
  }
}
}  // namespace

void check_same_device(const char* op, const std::vector<Tensor>& ts) {
  check_all_same(
      op, ts, [](const Tensor& t) { return t.device(); },
      [](const Tensor& t) { return t.device().str(); }, "all tensors on one device",
      "move them with .to(device)");
}

void check_same_dtype(const char* op, const std::vector<Tensor>& ts) {
  check_all_same(
      op, ts, [](const Tensor& t) { return t.dtype(); },
      [](const Tensor& t) { return dtype_name(t.dtype()); }, "one dtype",
      "convert with .to(dtype)");
}

void check_floating(const char* op, const Tensor& t) {
  if (!is_floating(t.dtype()))
    throw Error(str(op, ": needs a floating tensor (f32, f64, bf16, f16), got ",
                    dtype_name(t.dtype()), " ", shape_str(t.shape())));
}

template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::vector<const Tensor*>& operands,
                               const char* op) {
  FG_CHECK(int(operands.size()) == N, op, ": internal error: indexer arity");
  FG_CHECK(shape.size() <= size_t(kMaxDims), op, ": tensors of more than ", kMaxDims,
           " dims are not supported, got ", shape_str(shape));
  StridedIndexer<N> idx;
  idx.ndim = int(shape.size());
  bool contiguous = true;
  for (int d = 0; d < idx.ndim; ++d) idx.sizes[d] = shape[d];
  for (int a = 0; a < N; ++a) {
    const Tensor& t = *operands[a];
    const Shape& ts = t.shape();
    FG_CHECK(ts.size() <= shape.size(), op, ": operand ", shape_str(ts),
             " has more dims than the result ", shape_str(shape));
    size_t lead = shape.size() - ts.size();
    for (int d = 0; d < idx.ndim; ++d) {
      if (size_t(d) < lead) {
        idx.strides[a][d] = 0;
        continue;
      }
      int64_t sz = ts[d - lead];
      FG_CHECK(sz == shape[d] || sz == 1, op, ": operand ", shape_str(ts),
               " does not broadcast to ", shape_str(shape));
      idx.strides[a][d] = (sz == 1 && shape[d] != 1) ? 0 : t.stride(int64_t(d - lead));
    }
    if (!(ts == shape && t.is_contiguous())) contiguous = false;
  }
  idx.contiguous = contiguous;
  // Merge dims: a size-1 dim goes, and dim d joins d + 1 when every operand steps over d as
  // over d + 1 taken whole (stride[d] == stride[d + 1] * size[d + 1]; broadcast zeros too).
  // [B, T, C] + [C] becomes [B * T, C] + [C]: fewer divisions per element in the kernels and
  // longer inner runs in the CPU loops. The visiting order of elements is unchanged.
  int nd = 0;
  for (int d = 0; d < idx.ndim; ++d) {
    if (idx.sizes[d] == 1) continue;
    bool merge = nd > 0;
    for (int a = 0; a < N && merge; ++a)
      merge = idx.strides[a][nd - 1] == idx.strides[a][d] * idx.sizes[d];
    if (merge) {
      idx.sizes[nd - 1] *= idx.sizes[d];
      for (int a = 0; a < N; ++a) idx.strides[a][nd - 1] = idx.strides[a][d];
    } else {
      idx.sizes[nd] = idx.sizes[d];
      for (int a = 0; a < N; ++a) idx.strides[a][nd] = idx.strides[a][d];
      ++nd;
    }
  }
  // An empty tensor keeps its dims (the kernels return before looking at them).
  if (shape_numel(shape) != 0) idx.ndim = nd;
  return idx;
}

template StridedIndexer<1> make_indexer<1>(const Shape&, const std::vector<const Tensor*>&,
                                           const char*);
template StridedIndexer<2> make_indexer<2>(const Shape&, const std::vector<const Tensor*>&,
                                           const char*);
template StridedIndexer<3> make_indexer<3>(const Shape&, const std::vector<const Tensor*>&,
                                           const char*);
template StridedIndexer<4> make_indexer<4>(const Shape&, const std::vector<const Tensor*>&,
                                           const char*);

}  // namespace ops
}  // namespace fg
