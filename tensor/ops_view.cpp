// Views: new sizes, strides and offset over the same storage. No data moves.
#include <algorithm>
#include <numeric>

#include "tensor/ops.h"

namespace fg::ops {

Shape infer_shape(const Shape& s, int64_t numel, const char* op) {
  Shape r = s;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      FG_CHECK(infer < 0, op, ": only one dim can be -1, got ", shape_str(s));
      infer = int64_t(i);
    } else {
      FG_CHECK(s[i] >= 0, op, ": invalid size ", s[i], " in ", shape_str(s));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    FG_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(s),
             " is invalid for a tensor of ", numel, " elements");
    r[size_t(infer)] = numel / known;
  }
  FG_CHECK(shape_numel(r) == numel, op, ": shape ", shape_str(s),
           " is invalid for a tensor of ", numel, " elements");
  return r;
}

// Strides for viewing t as `shape` without a copy, or empty when impossible. Groups of
// dims that are contiguous with each other can be split and merged freely.
static bool view_strides(const Tensor& t, const Shape& shape, Shape& out) {
  const Shape& os = t.shape();
  const Shape& ost = t.strides();
  out.assign(shape.size(), 0);
  if (t.numel() == 0 || os.empty()) {  // nothing to keep in place
    out = contiguous_strides(shape);
    return true;
  }
  int64_t view_d = int64_t(shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(os.size()) - 1; d >= 0; --d) {
    tensor_numel *= os[size_t(d)];
    // End of a contiguous chunk of the original tensor?
    if (d == 0 || (os[size_t(d - 1)] != 1 && ost[size_t(d - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[size_t(view_d)] == 1)) {
        out[size_t(view_d)] = view_numel * chunk_base_stride;
        view_numel *= shape[size_t(view_d)];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = ost[size_t(d - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Tensor view(const Tensor& t, const Shape& s) {
  Shape shape = infer_shape(s, t.numel(), "view");
  Shape strides;
  FG_CHECK(view_strides(t, shape, strides), "view: cannot view a tensor of shape ",
           shape_str(t.shape()), " and strides ", shape_str(t.strides()), " as ", shape_str(shape),
           " without a copy; use reshape() (or contiguous() first)");
  return t.as_strided_raw(shape, strides, t.storage_offset());
}

Tensor reshape(const Tensor& t, const Shape& s) {
  Shape shape = infer_shape(s, t.numel(), "reshape");
  Shape strides;
  if (view_strides(t, shape, strides)) return t.as_strided_raw(shape, strides, t.storage_offset());
  return view(contiguous(t), shape);
}

Tensor transpose(const Tensor& t, int64_t d0, int64_t d1) {
  d0 = t.wrap_dim(d0, "transpose");
  d1 = t.wrap_dim(d1, "transpose");
  Shape s = t.shape(), st = t.strides();
  std::swap(s[size_t(d0)], s[size_t(d1)]);
  std::swap(st[size_t(d0)], st[size_t(d1)]);
  return t.as_strided_raw(s, st, t.storage_offset());
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  FG_CHECK(int64_t(dims.size()) == t.dim(), "permute: got ", dims.size(),
           " dims for a tensor of shape ", shape_str(t.shape()));
  Shape s(dims.size()), st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = t.wrap_dim(dims[i], "permute");
    FG_CHECK(!seen[size_t(d)], "permute: dim ", d, " repeated in ", shape_str(dims));
    seen[size_t(d)] = true;
    s[i] = t.shape()[size_t(d)];
    st[i] = t.strides()[size_t(d)];
  }
  return t.as_strided_raw(s, st, t.storage_offset());
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  dim = t.wrap_dim(dim, "slice");
  FG_CHECK(step > 0, "slice: step must be positive, got ", step);
  int64_t n = t.shape()[size_t(dim)];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = t.shape(), st = t.strides();
  s[size_t(dim)] = (end - start + step - 1) / step;
  st[size_t(dim)] *= step;
  return t.as_strided_raw(s, st, t.storage_offset() + start * t.strides()[size_t(dim)]);
}

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  dim = t.wrap_dim(dim, "narrow");
  int64_t n = t.shape()[size_t(dim)];
  FG_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ",
           start + length, ") is outside dim ", dim, " of size ", n, " (shape ",
           shape_str(t.shape()), ")");
  return slice(t, dim, start, start + length, 1);
}

Tensor select(const Tensor& t, int64_t dim, int64_t index) {
  dim = t.wrap_dim(dim, "select");
  int64_t n = t.shape()[size_t(dim)];
  FG_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dim ", dim,
           " of size ", n);
  if (index < 0) index += n;
  Shape s = t.shape(), st = t.strides();
  int64_t off = t.storage_offset() + index * st[size_t(dim)];
  s.erase(s.begin() + dim);
  st.erase(st.begin() + dim);
  return t.as_strided_raw(s, st, off);
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  int64_t n = t.dim() + 1;
  int64_t d = dim < 0 ? dim + n : dim;
  FG_CHECK(d >= 0 && d < n, "unsqueeze: dim ", dim, " is out of range for shape ",
           shape_str(t.shape()));
  Shape s = t.shape(), st = t.strides();
  int64_t stride = d < t.dim() ? st[size_t(d)] * s[size_t(d)] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return t.as_strided_raw(s, st, t.storage_offset());
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  dim = t.wrap_dim(dim, "squeeze");
  if (t.shape()[size_t(dim)] != 1) return t.as_strided_raw(t.shape(), t.strides(), t.storage_offset());
  Shape s = t.shape(), st = t.strides();
  s.erase(s.begin() + dim);
  st.erase(st.begin() + dim);
  return t.as_strided_raw(s, st, t.storage_offset());
}

Tensor expand(const Tensor& t, const Shape& shape) {
  FG_CHECK(shape.size() >= size_t(t.dim()), "expand: cannot expand ", shape_str(t.shape()),
           " to fewer dims ", shape_str(shape));
  size_t lead = shape.size() - size_t(t.dim());
  Shape s(shape.size()), st(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      FG_CHECK(shape[i] >= 0, "expand: invalid size in ", shape_str(shape));
      s[i] = shape[i];
      st[i] = 0;
      continue;
    }
    int64_t cur = t.shape()[i - lead];
    int64_t want = shape[i] == -1 ? cur : shape[i];
    FG_CHECK(cur == want || cur == 1, "expand: cannot expand ", shape_str(t.shape()), " to ",
             shape_str(shape), " (dim ", i, ": ", cur, " vs ", want, ")");
    s[i] = want;
    st[i] = cur == want ? t.strides()[i - lead] : 0;
  }
  return t.as_strided_raw(s, st, t.storage_offset());
}

Tensor flatten(const Tensor& t, int64_t start_dim, int64_t end_dim) {
  if (t.dim() == 0) return reshape(t, {1});
  start_dim = t.wrap_dim(start_dim, "flatten");
  end_dim = t.wrap_dim(end_dim, "flatten");
  FG_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " > end_dim ", end_dim);
  Shape s;
  for (int64_t i = 0; i < start_dim; ++i) s.push_back(t.shape()[size_t(i)]);
  int64_t m = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) m *= t.shape()[size_t(i)];
  s.push_back(m);
  for (int64_t i = end_dim + 1; i < t.dim(); ++i) s.push_back(t.shape()[size_t(i)]);
  return reshape(t, s);
}

}  // namespace fg::ops
