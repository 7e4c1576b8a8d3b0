// Differentiable views and copies: the backward of a view puts the gradient back into the
// input's shape (reshape, transpose back, scatter into a zero tensor, or sum a broadcast).
#include "autograd/functions.h"

namespace fg {

namespace {
using Grads = std::vector<Tensor>;
using Saved = std::vector<Tensor>;
using Needs = std::vector<bool>;

// Gradient of a strided sub-view (slice, narrow, select): zeros with g written into the view.
Tensor scatter_into_zeros(const Tensor& g, const Shape& in_shape,
                          const std::function<Tensor(const Tensor&)>& make_view) {
  Tensor z = zeros(in_shape, TensorOptions(g.dtype()).device(g.device()));
  Tensor v = make_view(z);
  ops::copy_(v, g);
  return z;
}
}  // namespace

Tensor view(const Tensor& t, const Shape& s) {
  Shape in = t.shape();
  return record("ViewBackward", {t}, ops::view(t, s), {},
                [in](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::reshape(g[0], in)};
                });
}

Tensor reshape(const Tensor& t, const Shape& s) {
  Shape in = t.shape();
  return record("ReshapeBackward", {t}, ops::reshape(t, s), {},
                [in](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::reshape(g[0], in)};
                });
}

Tensor transpose(const Tensor& t, int64_t d0, int64_t d1) {
  return record("TransposeBackward", {t}, ops::transpose(t, d0, d1), {},
                [d0, d1](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::transpose(g[0], d0, d1)};
                });
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  Tensor out = ops::permute(t, dims);
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[size_t(t.wrap_dim(dims[i], "permute"))] = int64_t(i);
  return record("PermuteBackward", {t}, out, {},
                [inverse](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::permute(g[0], inverse)};
                });
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Shape in = t.shape();
  return record("SliceBackward", {t}, ops::slice(t, dim, start, end, step), {},
                [=](const Grads& g, const Saved&, const Needs&) {
                  return Grads{scatter_into_zeros(g[0], in, [&](const Tensor& z) {
                    return ops::slice(z, dim, start, end, step);
                  })};
                });
}

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  Shape in = t.shape();
  return record("NarrowBackward", {t}, ops::narrow(t, dim, start, length), {},
                [=](const Grads& g, const Saved&, const Needs&) {
                  return Grads{scatter_into_zeros(g[0], in, [&](const Tensor& z) {
                    return ops::narrow(z, dim, start, length);
                  })};
                });
}

Tensor select(const Tensor& t, int64_t dim, int64_t index) {
  Shape in = t.shape();
  return record("SelectBackward", {t}, ops::select(t, dim, index), {},
                [=](const Grads& g, const Saved&, const Needs&) {
                  return Grads{scatter_into_zeros(g[0], in, [&](const Tensor& z) {
                    return ops::select(z, dim, index);
                  })};
                });
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  Shape in = t.shape();
  return record("UnsqueezeBackward", {t}, ops::unsqueeze(t, dim), {},
                [in](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::reshape(g[0], in)};
                });
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  Shape in = t.shape();
  return record("SqueezeBackward", {t}, ops::squeeze(t, dim), {},
                [in](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::reshape(g[0], in)};
                });
}

Tensor expand(const Tensor& t, const Shape& s) {
  Shape in = t.shape();
  return record("ExpandBackward", {t}, ops::expand(t, s), {},
                [in](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::sum_to(g[0], in)};
                });
}

Tensor flatten(const Tensor& t, int64_t start_dim, int64_t end_dim) {
  Shape in = t.shape();
  return record("FlattenBackward", {t}, ops::flatten(t, start_dim, end_dim), {},
                [in](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::reshape(g[0], in)};
                });
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return record("ContiguousBackward", {t}, ops::contiguous(t), {},
                [](const Grads& g, const Saved&, const Needs&) { return Grads{g[0]}; });
}

Tensor clone(const Tensor& t) {
  return record("CloneBackward", {t}, ops::clone(t), {},
                [](const Grads& g, const Saved&, const Needs&) { return Grads{g[0]}; });
}

Tensor to(const Tensor& t, Device d) {
  if (t.device() == d) return t;
  Device from = t.device();
  return record("ToDeviceBackward", {t}, ops::to_device(t, d), {},
                [from](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::to_device(g[0], from)};
                });
}

Tensor to(const Tensor& t, DType dt) {
  if (t.dtype() == dt) return t;
  DType from = t.dtype();
  Tensor out = ops::to_dtype(t, dt);
  if (!is_floating(dt)) return out;  // integers carry no gradient
  return record("ToDTypeBackward", {t}, out, {},
                [from](const Grads& g, const Saved&, const Needs&) {
                  return Grads{ops::to_dtype(g[0], from)};
                });
}

// ---- Tensor methods ----
Tensor Tensor::detach() const { return detached_alias(*this); }
Tensor Tensor::view(const Shape& s) const { return fg::view(*this, s); }
Tensor Tensor::reshape(const Shape& s) const { return fg::reshape(*this, s); }
Tensor Tensor::transpose(int64_t d0, int64_t d1) const { return fg::transpose(*this, d0, d1); }
Tensor Tensor::permute(const std::vector<int64_t>& dims) const { return fg::permute(*this, dims); }
Tensor Tensor::slice(int64_t dim, int64_t start, int64_t end, int64_t step) const {
  return fg::slice(*this, dim, start, end, step);
}
Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  return fg::narrow(*this, dim, start, length);
}
Tensor Tensor::select(int64_t dim, int64_t index) const { return fg::select(*this, dim, index); }
Tensor Tensor::unsqueeze(int64_t dim) const { return fg::unsqueeze(*this, dim); }
Tensor Tensor::squeeze(int64_t dim) const { return fg::squeeze(*this, dim); }
Tensor Tensor::expand(const Shape& s) const { return fg::expand(*this, s); }
Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  return fg::flatten(*this, start_dim, end_dim);
}
Tensor Tensor::contiguous() const { return fg::contiguous(*this); }
Tensor Tensor::clone() const { return fg::clone(*this); }
Tensor Tensor::to(Device d) const { return fg::to(*this, d); }
Tensor Tensor::to(DType t) const { return fg::to(*this, t); }

}  // namespace fg
