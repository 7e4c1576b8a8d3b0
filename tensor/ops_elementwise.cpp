// Raw elementwise ops on Tensors: unary, binary (numpy broadcasting), binary with a scalar,
// where and masked_fill. Checks devices, dtypes and shapes, allocates a contiguous output and
// hands strided indexers to the CPU or CUDA kernels (kernels/*/elementwise.*). Inputs may be
// any strided views; broadcasting is done with zero strides, never with copies.
#include <cmath>

#include "kernels/common/elementwise_math.h"
#include "tensor/ops.h"

namespace fg::ops {
namespace {


void check_defined(const char* op, const Tensor& t, const char* which) {
  FG_CHECK(t.defined(), op, ": the ", which, " tensor is undefined");
}

// Integer tensors only meet integer scalars: 2.5 has no exact i32/i64 meaning.
void check_scalar_for_dtype(const char* op, DType dt, double s) {
  if (is_floating(dt)) return;
  FG_CHECK(std::isfinite(s) && s == std::floor(s) && std::fabs(s) < 9.2e18, op, ": scalar ", s,
           " is not an integer, but the tensor has dtype ", dtype_name(dt),
           "; convert the tensor with .to(f32) first");
}

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_op_name(op);
  check_defined(name, x, "input");
  FG_CHECK(is_floating(x.dtype()) || unary_supports_int(op), name, ": needs a floating tensor, got ",
           dtype_name(x.dtype()), " ", shape_str(x.shape()), "; convert with .to(f32)");
  Tensor out = empty(x.shape(), TensorOptions(x.dtype()).device(x.device()));
  auto idx = make_indexer<2>(out.shape(), {&out, &x}, name);
  FG_CALL_KERNEL(x.device(), unary, op, x.dtype(), out.numel(), idx, x.data_ptr(),
                      out.data_ptr());
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_op_name(op);
  check_defined(name, a, "first");
  check_defined(name, b, "second");
  check_same_device(name, {a, b});
  check_same_dtype(name, {a, b});
  FG_CHECK(is_floating(a.dtype()) || binary_supports_int(op), name,
           ": needs floating tensors, got ", dtype_name(a.dtype()), " ", shape_str(a.shape()),
           " and ", shape_str(b.shape()), "; convert with .to(f32)");
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  auto idx = make_indexer<3>(shape, {&out, &a, &b}, name);
  FG_CALL_KERNEL(a.device(), binary, op, a.dtype(), out.numel(), idx, a.data_ptr(),
                      b.data_ptr(), out.data_ptr());
  return out;
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first) {
  const char* name = binary_op_name(op);
  check_defined(name, a, "input");
  FG_CHECK(is_floating(a.dtype()) || binary_supports_int(op), name,
           " (with a scalar): needs a floating tensor, got ", dtype_name(a.dtype()), " ",
           shape_str(a.shape()), "; convert with .to(f32)");
  check_scalar_for_dtype(name, a.dtype(), s);
  Tensor out = empty(a.shape(), TensorOptions(a.dtype()).device(a.device()));
  auto idx = make_indexer<2>(out.shape(), {&out, &a}, name);
  FG_CALL_KERNEL(a.device(), binary_scalar, op, a.dtype(), out.numel(), idx, a.data_ptr(),
                      s, scalar_first, out.data_ptr());
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond, "condition");
  check_defined("where", a, "first value");
  check_defined("where", b, "second value");
  check_same_device("where", {cond, a, b});
  check_same_dtype("where", {a, b});  // cond may have any dtype: nonzero means true
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(),
                                 "where");
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  auto idx = make_indexer<4>(shape, {&out, &cond, &a, &b}, "where");
  FG_CALL_KERNEL(a.device(), where, a.dtype(), cond.dtype(), out.numel(), idx,
                      cond.data_ptr(), a.data_ptr(), b.data_ptr(), out.data_ptr());
  return out;
}

Tensor masked_fill(const Tensor& t, const Tensor& mask, double value) {
  check_defined("masked_fill", t, "input");
  check_defined("masked_fill", mask, "mask");
  check_same_device("masked_fill", {t, mask});
  Shape shape = broadcast_shapes(t.shape(), mask.shape(), "masked_fill");
  FG_CHECK(shape == t.shape(), "masked_fill: mask ", shape_str(mask.shape()),
           " must broadcast to the input's shape ", shape_str(t.shape()), ", but it widens it to ",
           shape_str(shape));
  if (!is_floating(t.dtype())) check_scalar_for_dtype("masked_fill", t.dtype(), value);
  // The fill value as a 0-d tensor broadcast by where: no full-size temporary.
  Tensor v = scalar_tensor(value, TensorOptions(t.dtype()).device(t.device()));
  return where(mask, v, t);
}

}  // namespace fg::ops
