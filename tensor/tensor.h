// Tensor: the one array type of flashgrad (shape, strides, dtype, device, shared storage, and
// optional autograd metadata), with creation functions and printing.
//
// Layering: this header declares the whole user-facing Tensor, but tensor/ implements only
// the parts that need no autograd (metadata, raw data access, creation, printing). The
// differentiable methods (views, arithmetic, reductions, backward) are defined in autograd/,
// which builds graph nodes around the raw ops of tensor/ops.h. A program that links the
// flashgrad library gets both.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "tensor/allocator.h"
#include "tensor/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace fg {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);
// Broadcasts two shapes numpy-style; throws naming `op` and both shapes when they don't fit.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

struct Node;  // an autograd graph node; defined in autograd/node.h
class Tensor;

// Autograd state of a tensor; tensor/ only stores it.
struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Tensor> grad;           // accumulated gradient of a leaf (or retained)
  std::shared_ptr<Node> grad_fn;          // the node that produced this tensor (null for leaves)
  uint32_t output_nr = 0;                 // which output of grad_fn this is
  std::weak_ptr<Node> grad_accumulator;   // a leaf's AccumulateGrad node, made on demand
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape sizes;
  Shape strides;       // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;
  uint64_t version = 0;  // bumped by in-place writes; saved tensors check it
};

struct TensorOptions {
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu();
  bool requires_grad_ = false;
  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}
  TensorOptions(Device d) : device_(d) {}
  TensorOptions& dtype(DType d) { dtype_ = d; return *this; }
  TensorOptions& device(Device d) { device_ = d; return *this; }
  TensorOptions& requires_grad(bool r = true) { requires_grad_ = r; return *this; }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata (tensor/tensor.cpp) ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().sizes; }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return int64_t(impl().sizes.size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().sizes); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  int64_t storage_offset() const { return impl().offset; }
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return size_t(numel()) * element_size(); }
  bool is_contiguous() const;
  bool is_cuda() const { return device().is_cuda(); }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same_storage(const Tensor& o) const { return storage() == o.storage(); }
  // Wraps a negative dim and checks the range; `op` names the caller in the error.
  int64_t wrap_dim(int64_t d, const char* op) const;

  // Pointer to the first element (storage + offset). Typed access checks the dtype.
  void* data_ptr() const;
  template <typename T> T* data() const {
    FG_CHECK(dtype_of<T>::value == dtype(), "Tensor::data<", dtype_name(dtype_of<T>::value),
             ">: tensor has dtype ", dtype_name(dtype()));
    return static_cast<T*>(data_ptr());
  }
  // Copies to a host vector of T (converting the dtype), in logical (row-major) order.
  template <typename T> std::vector<T> to_vector() const;
  // The single value of a one-element tensor, as double.
  double item() const;
  template <typename T> T item() const { return T(item()); }

  // A new TensorImpl over the same storage with other sizes/strides/offset (no autograd).
  Tensor as_strided_raw(const Shape& sizes, const Shape& strides, int64_t offset) const;

  // ---- autograd metadata (tensor/tensor.cpp) ----
  bool requires_grad() const { return impl().autograd && impl().autograd->requires_grad; }
  // Marks a leaf as needing a gradient. Only floating tensors can.
  Tensor& set_requires_grad(bool r = true);
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return !grad_fn(); }
  // The accumulated gradient (undefined Tensor when none).
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void zero_grad() { set_grad(Tensor()); }
  AutogradMeta& autograd_meta();  // creates it on demand

  // ---- differentiable methods (defined in autograd/) ----
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;
  Tensor view(const Shape& s) const;
  Tensor reshape(const Shape& s) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& s) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device d) const;
  Tensor to(DType t) const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor cuda() const { return to(Device::cuda(0)); }
  Tensor sum(const std::vector<int64_t>& dims = {}, bool keepdim = false) const;
  Tensor mean(const std::vector<int64_t>& dims = {}, bool keepdim = false) const;
  Tensor max(int64_t dim, bool keepdim = false) const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;

  // ---- in place, no autograd (tensor/tensor.cpp) ----
  Tensor& fill_(double v);
  Tensor& zero_() { return fill_(0.0); }
  // Copies src into this tensor (broadcasting, converting dtype, crossing devices).
  Tensor& copy_(const Tensor& src);

 private:
  TensorImpl& impl() const {
    FG_CHECK(impl_, "use of an undefined Tensor (default-constructed or moved-from)");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

// ---- creation (tensor/tensor.cpp) ----
Tensor empty(const Shape& s, TensorOptions o = {});
Tensor zeros(const Shape& s, TensorOptions o = {});
Tensor ones(const Shape& s, TensorOptions o = {});
Tensor full(const Shape& s, double v, TensorOptions o = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
Tensor arange(int64_t start, int64_t end, int64_t step = 1, TensorOptions o = DType::i64);
Tensor arange(int64_t end, TensorOptions o = DType::i64);
// Scalar (0-d) tensor.
Tensor scalar_tensor(double v, TensorOptions o = {});
// From host values in row-major order; T's dtype must match o's dtype.
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& s, TensorOptions o = {});
Tensor tensor(std::initializer_list<double> values, TensorOptions o = {});

// ---- random numbers: Philox4x32-10, identical on CPU and CUDA for the same seed ----
// A generator hands out (seed, offset) pairs; each draw of n numbers advances the offset.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t s) { seed_ = s; offset_ = 0; }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t o) { offset_ = o; }
  // Reserves one offset for one random op and returns it.
  uint64_t next_offset() { return offset_++; }

  // Host-side draws from the stream of this generator's seed at `offset` (an offset reserved
  // with next_offset()); they read state only, so any index can be drawn in any order.
  // The 64 random bits behind element `index` of randint() at that offset (words 2 index and
  // 2 index + 1 of the uniform stream, the first as the high half).
  uint64_t random_u64(uint64_t offset, uint64_t index) const;
  // Uniform in [0, 1) with 24 random bits: element `index` of rand() at that offset.
  double random_uniform(uint64_t offset, uint64_t index) const;

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};
Generator& default_generator();
void manual_seed(uint64_t seed);

// Uniform [0, 1) and standard normal values.
Tensor rand(const Shape& s, TensorOptions o = {}, Generator* g = nullptr);
Tensor randn(const Shape& s, TensorOptions o = {}, Generator* g = nullptr);
// Uniform integers in [low, high).
Tensor randint(int64_t low, int64_t high, const Shape& s, TensorOptions o = DType::i64,
               Generator* g = nullptr);

// Printing: shape, dtype, device, and the values (large tensors abbreviated).
std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::string to_string(const Tensor& t);

}  // namespace fg
