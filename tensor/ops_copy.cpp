// Copies: contiguous(), clone(), moves between devices and dtypes, copy_ and fill_.
#include "tensor/ops.h"

namespace fg::ops {

void fill_(Tensor& t, double v) {
  if (t.numel() == 0) return;
  auto idx = make_indexer<1>(t.shape(), {&t}, "fill_");
  FG_KERNEL(t.device(), fill)(t.dtype(), t.numel(), idx, t.data_ptr(), v);
}

void copy_(Tensor& dst, const Tensor& src) {
  FG_CHECK(src.defined() && dst.defined(), "copy_: undefined tensor");
  if (dst.numel() == 0) return;
  if (src.device() != dst.device()) {
    // Cross-device: bring a contiguous image of src to dst's device first.
    Tensor s = contiguous(src);
    Tensor moved = empty(s.shape(), TensorOptions(s.dtype()).device(dst.device()));
    copy_bytes(moved.data_ptr(), moved.device(), s.data_ptr(), s.device(), s.nbytes());
    copy_(dst, moved);
    return;
  }
  auto idx = make_indexer<2>(dst.shape(), {&dst, &src}, "copy_");
  FG_KERNEL(dst.device(), copy)(dst.dtype(), src.dtype(), dst.numel(), idx, src.data_ptr(),
                                dst.data_ptr());
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return clone(t);
}

Tensor clone(const Tensor& t) {
  Tensor r = empty(t.shape(), TensorOptions(t.dtype()).device(t.device()));
  copy_(r, t);
  return r;
}

Tensor to_device(const Tensor& t, Device d) {
  if (t.device() == d) return t;
  Tensor s = contiguous(t);
  Tensor r = empty(s.shape(), TensorOptions(s.dtype()).device(d));
  copy_bytes(r.data_ptr(), d, s.data_ptr(), s.device(), s.nbytes());
  return r;
}

Tensor to_dtype(const Tensor& t, DType dt) {
  if (t.dtype() == dt) return t;
  Tensor r = empty(t.shape(), TensorOptions(dt).device(t.device()));
  copy_(r, t);
  return r;
}

}  // namespace fg::ops

namespace fg {
void no_cuda_kernel(const char* name) {
  throw Error(str("kernel '", name,
                  "' was asked for on a CUDA tensor, but this flashgrad was built without CUDA; "
                  "use device cpu, or rebuild with the CUDA toolkit"));
}
}  // namespace fg
