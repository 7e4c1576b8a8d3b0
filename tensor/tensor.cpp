// Tensor metadata, raw data access, creation, random numbers and printing.
#include "tensor/tensor.h"

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/philox.h"
#include "kernels/kernels.h"
#include "tensor/ops.h"

namespace fg {

namespace {

std::shared_ptr<TensorImpl> new_impl(const Shape& s, DType dt, Device d) {
  for (int64_t x : s)
    FG_CHECK(x >= 0, "empty: negative size in shape ", shape_str(s));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(d, size_t(shape_numel(s)) * dtype_size(dt));
  impl->sizes = s;
  impl->strides = contiguous_strides(s);
  impl->dtype = dt;
  return impl;
}

}  // namespace

int64_t Tensor::wrap_dim(int64_t d, const char* op) const {
  int64_t n = dim();
  int64_t w = d < 0 ? d + n : d;
  if (w < 0 || w >= n)
    throw Error(str(op, ": dim ", d, " is out of range for a tensor of shape ", shape_str(shape()),
                    " (valid: ", -n, " to ", n - 1, ")"));
  return w;
}

int64_t Tensor::size(int64_t d) const { return impl().sizes[wrap_dim(d, "size")]; }
int64_t Tensor::stride(int64_t d) const { return impl().strides[wrap_dim(d, "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  const auto& s = impl().sizes;
  const auto& st = impl().strides;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * int64_t(element_size());
}

Tensor Tensor::as_strided_raw(const Shape& sizes, const Shape& strides, int64_t offset) const {
  auto v = std::make_shared<TensorImpl>();
  v->storage = impl().storage;
  v->sizes = sizes;
  v->strides = strides;
  v->offset = offset;
  v->dtype = impl().dtype;
  return Tensor(v);
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = ops::contiguous(ops::to_dtype(ops::to_device(*this, Device::cpu()),
                                              dtype_of<T>::value));
  const T* p = static_cast<const T*>(host.data_ptr());
  return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bfloat16> Tensor::to_vector<bfloat16>() const;
template std::vector<float16> Tensor::to_vector<float16>() const;

double Tensor::item() const {
  FG_CHECK(numel() == 1, "item: needs a tensor with one element, got shape ", shape_str(shape()));
  return to_vector<double>()[0];
}

// ---- autograd metadata ----
AutogradMeta& Tensor::autograd_meta() {
  if (!impl().autograd) impl().autograd = std::make_shared<AutogradMeta>();
  return *impl().autograd;
}

Tensor& Tensor::set_requires_grad(bool r) {
  if (r)
    FG_CHECK(is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got ",
             dtype_name(dtype()), " ", shape_str(shape()));
  if (!r && !impl().autograd) return *this;
  FG_CHECK(r || is_leaf(), "set_requires_grad(false): tensor ", shape_str(shape()),
           " is not a leaf; use detach() instead");
  autograd_meta().requires_grad = r;
  return *this;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl().autograd ? impl().autograd->grad_fn : none;
}

Tensor Tensor::grad() const {
  if (!impl().autograd || !impl().autograd->grad) return Tensor();
  return *impl().autograd->grad;
}

void Tensor::set_grad(const Tensor& g) {
  if (!g.defined()) {
    if (impl().autograd) impl().autograd->grad.reset();
    return;
  }
  FG_CHECK(g.shape() == shape(), "set_grad: gradient shape ", shape_str(g.shape()),
           " does not match tensor shape ", shape_str(shape()));
  autograd_meta().grad = std::make_shared<Tensor>(g);
}

// ---- in place ----
Tensor& Tensor::fill_(double v) {
  ops::fill_(*this, v);
  impl().version++;
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  ops::copy_(*this, src);
  impl().version++;
  return *this;
}

// ---- creation ----
Tensor empty(const Shape& s, TensorOptions o) {
  Tensor t(new_impl(s, o.dtype_, o.device_));
  if (o.requires_grad_) t.set_requires_grad(true);
  return t;
}

Tensor full(const Shape& s, double v, TensorOptions o) {
  bool rg = o.requires_grad_;
  Tensor t = empty(s, o.requires_grad(false));
  t.fill_(v);
  if (rg) t.set_requires_grad(true);
  return t;
}
Tensor zeros(const Shape& s, TensorOptions o) { return full(s, 0.0, o); }
Tensor ones(const Shape& s, TensorOptions o) { return full(s, 1.0, o); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype()).device(t.device())); }
Tensor scalar_tensor(double v, TensorOptions o) { return full({}, v, o); }

Tensor arange(int64_t start, int64_t end, int64_t step, TensorOptions o) {
  FG_CHECK(step != 0, "arange: step must not be 0");
  int64_t n = std::max<int64_t>(0, (end - start + step + (step > 0 ? -1 : 1)) / step);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(start + i * step);
  Tensor host = from_vector<double>(v, {n}, TensorOptions(DType::f64));
  Tensor r = ops::to_device(ops::to_dtype(host, o.dtype_), o.device_);
  if (o.requires_grad_) r.set_requires_grad(true);
  return r;
}
Tensor arange(int64_t end, TensorOptions o) { return arange(0, end, 1, o); }

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& s, TensorOptions o) {
  FG_CHECK(int64_t(values.size()) == shape_numel(s), "from_vector: ", values.size(),
           " values do not fill shape ", shape_str(s));
  FG_CHECK(dtype_of<T>::value == o.dtype_, "from_vector: values are ",
           dtype_name(dtype_of<T>::value), " but the options ask for ", dtype_name(o.dtype_));
  bool rg = o.requires_grad_;
  Tensor t = empty(s, TensorOptions(o.dtype_).device(o.device_));
  copy_bytes(t.data_ptr(), t.device(), values.data(), Device::cpu(), values.size() * sizeof(T));
  if (rg) t.set_requires_grad(true);
  return t;
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector<bfloat16>(const std::vector<bfloat16>&, const Shape&, TensorOptions);
template Tensor from_vector<float16>(const std::vector<float16>&, const Shape&, TensorOptions);

Tensor tensor(std::initializer_list<double> values, TensorOptions o) {
  std::vector<double> v(values);
  Tensor host = from_vector<double>(v, {int64_t(v.size())}, TensorOptions(DType::f64));
  Tensor r = ops::to_device(ops::to_dtype(host, o.dtype_), o.device_);
  if (o.requires_grad_) r.set_requires_grad(true);
  return r;
}

// ---- random ----
Generator& default_generator() {
  static Generator g;
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

uint64_t Generator::random_u64(uint64_t offset, uint64_t index) const {
  uint64_t hi = philox_bits(seed_, offset, kPhiloxStreamUniform, 2 * index);
  uint64_t lo = philox_bits(seed_, offset, kPhiloxStreamUniform, 2 * index + 1);
  return (hi << 32) | lo;
}

double Generator::random_uniform(uint64_t offset, uint64_t index) const {
  return double(philox_uniform(seed_, offset, index));
}

namespace {
template <typename Fill>
Tensor random_tensor(const Shape& s, TensorOptions o, Generator* g, Fill fill) {
  if (!g) g = &default_generator();
  bool rg = o.requires_grad_;
  Tensor t = empty(s, TensorOptions(o.dtype_).device(o.device_));
  uint64_t offset = g->next_offset();
  if (t.numel() > 0) {
    fill(t, g->seed(), offset);
  }
  if (rg) t.set_requires_grad(true);
  return t;
}
}  // namespace

Tensor rand(const Shape& s, TensorOptions o, Generator* g) {
  return random_tensor(s, o, g, [](Tensor& t, uint64_t seed, uint64_t off) {
    FG_KERNEL(t.device(), rand_uniform)(t.dtype(), t.numel(), seed, off, 0.0, 1.0, t.data_ptr());
  });
}

Tensor randn(const Shape& s, TensorOptions o, Generator* g) {
  return random_tensor(s, o, g, [](Tensor& t, uint64_t seed, uint64_t off) {
    FG_KERNEL(t.device(), rand_normal)(t.dtype(), t.numel(), seed, off, 0.0, 1.0, t.data_ptr());
  });
}

Tensor randint(int64_t low, int64_t high, const Shape& s, TensorOptions o, Generator* g) {
  FG_CHECK(high > low, "randint: needs high > low, got [", low, ", ", high, ")");
  return random_tensor(s, o, g, [=](Tensor& t, uint64_t seed, uint64_t off) {
    FG_KERNEL(t.device(), rand_int)(t.dtype(), t.numel(), seed, off, low, high, t.data_ptr());
  });
}

// ---- printing ----
std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  os << "Tensor(shape=" << shape_str(t.shape()) << ", dtype=" << dtype_name(t.dtype())
     << ", device=" << t.device().str();
  if (t.requires_grad()) os << ", requires_grad";
  os << ")\n";
  std::vector<double> v = t.to_vector<double>();
  const Shape& s = t.shape();
  int64_t last = s.empty() ? 1 : s.back();
  const int64_t kEdge = 3;            // values shown at each end of a long row
  const int64_t kMaxRows = 6;         // rows shown at each end of a long tensor
  int64_t rows = last == 0 ? 0 : int64_t(v.size()) / last;
  bool is_int = !is_floating(t.dtype());
  auto fmt = [&](double x) {
    char buf[32];
    if (is_int)
      std::snprintf(buf, sizeof buf, "%lld", (long long)x);
    else
      std::snprintf(buf, sizeof buf, "% .5g", x);
    return std::string(buf);
  };
  for (int64_t r = 0; r < rows; ++r) {
    if (rows > 2 * kMaxRows && r == kMaxRows) {
      os << "  ...\n";
      r = rows - kMaxRows;
    }
    os << "  [";
    for (int64_t c = 0; c < last; ++c) {
      if (last > 2 * kEdge && c == kEdge) {
        os << ", ...";
        c = last - kEdge;
      }
      os << (c ? ", " : "") << fmt(v[size_t(r * last + c)]);
    }
    os << "]\n";
  }
  return os;
}

std::string to_string(const Tensor& t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

}  // namespace fg
