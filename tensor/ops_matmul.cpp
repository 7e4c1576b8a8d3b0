// ops::matmul: the numpy/PyTorch matrix product on Tensors, lowered to one batched GEMM call
// (kernels/cpu/matmul.cpp, kernels/cuda/matmul.cu).
//
// Shapes follow numpy: a [..., M, K] @ b [..., K, N] -> [..., M, N] with the batch dims
// broadcast; a 1-D a is a row vector [1, K] and a 1-D b a column vector [K, 1], and the added
// dim is dropped from the result. Operands are passed to the GEMM without copies whenever
// their last two dims are row-major or transposed row-major (e.g. x.transpose(-1, -2)) and
// their batch dims collapse to one stride (or are all broadcast, stride 0); anything else is
// made contiguous first.
#include <algorithm>

#include "tensor/ops.h"
#include "tensor/phase_timer.h"

namespace fg::ops {

namespace {


// How one operand of shape batch + [rows, cols] is handed to gemm.
struct GemmOperand {
  Tensor t;                  // the tensor whose data_ptr() is passed (maybe a contiguous copy)
  bool trans = false;        // stored as the transpose: element (r, c) at c * ld + r
  int64_t ld = 0;            // row stride of the stored matrix
  int64_t batch_stride = 0;  // elements between consecutive batch matrices
};

// The matrix layout of the last two dims, or false when neither row-major nor transposed.
bool matrix_layout(const Tensor& t, bool& trans, int64_t& ld) {
  int64_t nd = t.dim();
  int64_t rows = t.size(nd - 2), cols = t.size(nd - 1);
  // A size-1 dim's stride addresses nothing; give it the value a dense layout would have.
  int64_t rs = rows == 1 ? std::max<int64_t>(cols, 1) : t.stride(nd - 2);
  int64_t cs = cols == 1 ? 1 : t.stride(nd - 1);
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) {
    trans = false;
    ld = rs;
    return true;
  }
  // Transposed: a column of the logical matrix is a contiguous stored row.
  rs = rows == 1 ? 1 : t.stride(nd - 2);
  cs = cols == 1 ? std::max<int64_t>(rows, 1) : t.stride(nd - 1);
  if (rs == 1 && cs >= std::max<int64_t>(rows, 1)) {
    trans = true;
    ld = cs;
    return true;
  }
  return false;
}

// One stride that walks all batch matrices in row-major batch order, if there is one.
bool batch_stride(const Tensor& t, int64_t nbatch, int64_t& stride) {
  // Drop size-1 dims (their stride is irrelevant); the rest must nest like a dense array, or
  // all be broadcast (stride 0) so every batch entry is the same matrix.
  std::vector<int64_t> sizes, strides;
  for (int64_t d = 0; d < nbatch; ++d)
    if (t.size(d) != 1) {
      sizes.push_back(t.size(d));
      strides.push_back(t.stride(d));
    }
  if (sizes.empty()) {
    stride = 0;
    return true;
  }
  bool all_zero = std::all_of(strides.begin(), strides.end(), [](int64_t s) { return s == 0; });
  if (all_zero) {
    stride = 0;
    return true;
  }
  for (size_t i = 0; i + 1 < sizes.size(); ++i)
    if (strides[i] != strides[i + 1] * sizes[i + 1]) return false;
  stride = strides.back();
  return stride > 0;
}

GemmOperand gemm_operand(const Tensor& t, int64_t nbatch) {
  GemmOperand op;
  if (matrix_layout(t, op.trans, op.ld) && batch_stride(t, nbatch, op.batch_stride)) {
    op.t = t;
    return op;
  }
  op.t = contiguous(t);
  int64_t rows = t.size(nbatch), cols = t.size(nbatch + 1);
  op.trans = false;
  op.ld = std::max<int64_t>(cols, 1);
  op.batch_stride = rows * cols;
  return op;
}

Shape concat(Shape a, const Shape& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  FG_CHECK(a_in.defined() && b_in.defined(), "matmul: an operand is undefined");
  check_same_device("matmul", {a_in, b_in});
  check_same_dtype("matmul", {a_in, b_in});
  check_floating("matmul", a_in);
  FG_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: operands must have at least 1 dim, got ",
           shape_str(a_in.shape()), " @ ", shape_str(b_in.shape()),
           "; use mul for products with a scalar");
  // 1-D operands become matrices; the extra dim is dropped from the result at the end.
  Tensor a = a_in.dim() == 1 ? unsqueeze(a_in, 0) : a_in;
  Tensor b = b_in.dim() == 1 ? unsqueeze(b_in, 1) : b_in;
  int64_t M = a.size(a.dim() - 2), K = a.size(a.dim() - 1);
  int64_t Kb = b.size(b.dim() - 2), N = b.size(b.dim() - 1);
  FG_CHECK(K == Kb, "matmul: inner dimensions differ: ", shape_str(a_in.shape()), " @ ",
           shape_str(b_in.shape()), " (", K, " vs ", Kb,
           "); the last dim of the first operand must equal the ",
           b_in.dim() == 1 ? "length of the second" : "second-to-last dim of the second");

  Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape out_shape = concat(batch, {M, N});
  Shape final_shape = batch;
  if (a_in.dim() > 1) final_shape.push_back(M);
  if (b_in.dim() > 1) final_shape.push_back(N);

  Device dev = a.device();
  DType dt = a.dtype();
  Tensor out = empty(out_shape, TensorOptions(dt).device(dev));
  if (out.numel() == 0) return view(out, final_shape);
  PhaseScope timing(Phase::matmul, dev);  // (bench train's split of the step time)

  if (b_batch.empty() && !a_batch.empty()) {
    // [..., M, K] @ [K, N]: fold the batch into the rows, one GEMM of (batch * M) x N.
    Tensor a2 = reshape(a, {shape_numel(a_batch) * M, K});  // explicit: -1 is ambiguous when K = 0
    GemmOperand A = gemm_operand(a2, 0), B = gemm_operand(b, 0);
    FG_CALL_KERNEL(dev, gemm, dt, A.trans, B.trans, a2.size(0), N, K, 1.0, A.t.data_ptr(), A.ld,
                   0, B.t.data_ptr(), B.ld, 0, 0.0, out.data_ptr(), std::max<int64_t>(N, 1), 0,
                   1);
    return view(out, final_shape);
  }

  int64_t nbatch = int64_t(batch.size());
  GemmOperand A = gemm_operand(expand(a, concat(batch, {M, K})), nbatch);
  GemmOperand B = gemm_operand(expand(b, concat(batch, {K, N})), nbatch);
  FG_CALL_KERNEL(dev, gemm, dt, A.trans, B.trans, M, N, K, 1.0, A.t.data_ptr(), A.ld,
                 A.batch_stride, B.t.data_ptr(), B.ld, B.batch_stride, 0.0, out.data_ptr(),
                 std::max<int64_t>(N, 1), M * N, shape_numel(batch));
  return view(out, final_shape);
}

namespace {

// The product of all dims but the last.
int64_t leading_rows(const Tensor& x) {
  return shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
}

// x [..., cols] as a contiguous [rows, cols] matrix.
Tensor as_matrix(const Tensor& x) { return contiguous(reshape(x, {leading_rows(x), x.size(-1)})); }

}  // namespace

namespace {
LinearResult linear_impl(const char* op, const Tensor& x, const Tensor& w, const Tensor& b,
                         const Tensor& residual, bool gelu, bool keep_pre) {
  FG_CHECK(x.defined() && w.defined(), op, ": the input or the weight is undefined");
  check_same_device(op, {x, w, b});
  check_same_dtype(op, {x, w});
  check_floating(op, x);
  FG_CHECK(w.dim() == 2, op, ": weight must be [out_features, in_features], got ",
           shape_str(w.shape()));
  const int64_t N = w.size(0), K = w.size(1);
  FG_CHECK(x.dim() >= 1 && x.size(-1) == K, op, ": input ", shape_str(x.shape()),
           " does not end in in_features=", K, " of weight ", shape_str(w.shape()));
  if (b.defined()) {
    FG_CHECK(b.dtype() == w.dtype(), op, ": bias dtype ", dtype_name(b.dtype()),
             " differs from the weight's ", dtype_name(w.dtype()),
             "; convert the bias to the weight's dtype");
    FG_CHECK(b.dim() == 1 && b.size(0) == N, op, ": bias must be [", N, "], got ",
             shape_str(b.shape()));
  }
  Shape out_shape = x.shape();
  out_shape.back() = N;
  Tensor res;
  if (residual.defined()) {
    check_same_device(op, {x, residual});
    FG_CHECK(residual.shape() == out_shape && residual.dtype() == x.dtype(), op, ": residual ",
             dtype_name(residual.dtype()), " ", shape_str(residual.shape()),
             " must match the output ", dtype_name(x.dtype()), " ", shape_str(out_shape));
    res = contiguous(residual);
  }
  LinearResult r;
  r.y = empty(out_shape, like(x));
  if (gelu && keep_pre) r.pre = empty(out_shape, like(x));
  const int64_t M = leading_rows(x);
  if (r.y.numel() == 0) return r;
  Tensor xm = as_matrix(x), wc = contiguous(w), bc = b.defined() ? contiguous(b) : Tensor();
  Device dev = x.device();
  PhaseScope timing(Phase::matmul, dev);
  Tensor ws = workspace(dev, FG_CALL_KERNEL(dev, linear_workspace, x.dtype(), M, N, K,
                                            bc.defined() || res.defined(), gelu));
  FG_CALL_KERNEL(dev, linear, x.dtype(), M, N, K, xm.data_ptr(), wc.data_ptr(),
                 bc.defined() ? bc.data_ptr() : nullptr, res.defined() ? res.data_ptr() : nullptr,
                 gelu, r.y.data_ptr(), r.pre.defined() ? r.pre.data_ptr() : nullptr,
                 ws.defined() ? ws.data_ptr() : nullptr);
  return r;
}
}  // namespace

LinearResult linear(const Tensor& x, const Tensor& w, const Tensor& b, bool gelu, bool keep_pre) {
  return linear_impl("linear", x, w, b, Tensor(), gelu, keep_pre);
}

Tensor linear_residual(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual) {
  FG_CHECK(residual.defined(), "linear_residual: the residual is undefined");
  return linear_impl("linear_residual", x, w, b, residual, false, false).y;
}

LinearGrads linear_weight_grad(const Tensor& gy, const Tensor& x, bool need_bias) {
  const char* op = "linear_weight_grad";
  FG_CHECK(gy.defined() && x.defined(), op, ": the gradient or the input is undefined");
  check_same_device(op, {gy, x});
  check_same_dtype(op, {gy, x});
  check_floating(op, x);
  FG_CHECK(gy.dim() >= 1 && x.dim() >= 1, op, ": gradient ", shape_str(gy.shape()),
           " and input ", shape_str(x.shape()), " must have at least 1 dim each");
  const int64_t N = gy.size(-1), K = x.size(-1);
  Shape lead_g(gy.shape().begin(), gy.shape().end() - 1);
  Shape lead_x(x.shape().begin(), x.shape().end() - 1);
  FG_CHECK(lead_g == lead_x, op, ": gradient ", shape_str(gy.shape()), " and input ",
           shape_str(x.shape()), " must agree in all dims but the last");
  const int64_t M = shape_numel(lead_x);
  LinearGrads g;
  g.gw = empty({N, K}, like(x));
  if (need_bias) g.gb = empty({N}, like(x));
  if (N == 0) return g;
  Tensor gm = as_matrix(gy), xm = as_matrix(x);
  Device dev = x.device();
  PhaseScope timing(Phase::matmul, dev);
  Tensor ws = workspace(dev, FG_CALL_KERNEL(dev, linear_weight_grad_workspace, x.dtype(), M, N,
                                            K, need_bias));
  FG_CALL_KERNEL(dev, linear_weight_grad, x.dtype(), M, N, K, gm.data_ptr(), xm.data_ptr(),
                 g.gw.data_ptr(), need_bias ? g.gb.data_ptr() : nullptr,
                 ws.defined() ? ws.data_ptr() : nullptr);
  return g;
}

LinearInputGrads linear_input_grad(const Tensor& gy, const Tensor& w, const Tensor& pre,
                                   bool need_bias) {
  const char* op = "linear_input_grad";
  FG_CHECK(gy.defined() && w.defined(), op, ": the gradient or the weight is undefined");
  check_same_device(op, {gy, w, pre});
  check_same_dtype(op, {gy, w, pre});
  check_floating(op, gy);
  FG_CHECK(w.dim() == 2 && gy.dim() >= 1 && gy.size(-1) == w.size(0), op, ": gradient ",
           shape_str(gy.shape()), " and weight ", shape_str(w.shape()),
           " do not fit: the weight must be [N, K] with N the gradient's last dim");
  FG_CHECK(pre.defined() || !need_bias, op,
           ": a bias gradient needs the GELU's input (pre); pass pre, or need_bias = false");
  const int64_t N = w.size(0), K = w.size(1);
  Shape out_shape = gy.shape();
  out_shape.back() = K;
  if (pre.defined())
    FG_CHECK(pre.shape() == out_shape, op, ": pre ", shape_str(pre.shape()), " must be ",
             shape_str(out_shape), ", the input gradient's shape");
  const int64_t M = leading_rows(gy);
  LinearInputGrads g;
  g.gx = empty(out_shape, like(gy));
  if (need_bias) g.gb = empty({K}, like(gy));
  if (K == 0) return g;
  Tensor gm = as_matrix(gy), wc = contiguous(w), pc = pre.defined() ? as_matrix(pre) : Tensor();
  Device dev = gy.device();
  PhaseScope timing(Phase::matmul, dev);
  Tensor ws = workspace(dev, FG_CALL_KERNEL(dev, linear_input_grad_workspace, gy.dtype(), M, N,
                                            K, pre.defined(), need_bias));
  FG_CALL_KERNEL(dev, linear_input_grad, gy.dtype(), M, N, K, gm.data_ptr(), wc.data_ptr(),
                 pc.defined() ? pc.data_ptr() : nullptr, g.gx.data_ptr(),
                 need_bias ? g.gb.data_ptr() : nullptr, ws.defined() ? ws.data_ptr() : nullptr);
  return g;
}

}  // namespace fg::ops
