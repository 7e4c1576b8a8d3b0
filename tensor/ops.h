// The raw ops on Tensors: shape and dtype checks, output allocation, and dispatch to the CPU or
// CUDA kernel by device. No autograd here: autograd/functions.h wraps these in graph nodes, and
// backward formulas call them directly.
//
// Every op checks that its inputs share a device and dtype and throws fg::Error naming the op
// and the shapes when they don't. Results are new contiguous tensors unless the op is a view.
#pragma once
#include <vector>

#include "tensor/kernel_dispatch.h"
#include "tensor/tensor.h"

namespace fg::ops {

// ---- views (share storage; tensor/ops_view.cpp) ----
Tensor view(const Tensor& t, const Shape& s);       // needs compatible strides; one -1 allowed
Tensor reshape(const Tensor& t, const Shape& s);    // a view when possible, else a copy
Tensor transpose(const Tensor& t, int64_t d0, int64_t d1);
Tensor permute(const Tensor& t, const std::vector<int64_t>& dims);
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& t, int64_t dim, int64_t index);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor expand(const Tensor& t, const Shape& s);     // size-1 dims broadcast with stride 0
Tensor flatten(const Tensor& t, int64_t start_dim, int64_t end_dim);
// A shape with one -1 resolved against numel; throws naming `op`.
Shape infer_shape(const Shape& s, int64_t numel, const char* op);

// ---- copies (tensor/ops_copy.cpp) ----
Tensor contiguous(const Tensor& t);  // t itself when already contiguous
Tensor clone(const Tensor& t);
Tensor to_device(const Tensor& t, Device d);
Tensor to_dtype(const Tensor& t, DType dt);
void copy_(Tensor& dst, const Tensor& src);
void fill_(Tensor& t, double v);

// ---- elementwise (tensor/ops_elementwise.cpp) ----
Tensor unary(UnaryOp op, const Tensor& x);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);  // broadcasting
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first = false);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // broadcasting
Tensor masked_fill(const Tensor& t, const Tensor& mask, double value);
inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
inline Tensor neg(const Tensor& a) { return unary(UnaryOp::neg, a); }
inline Tensor mul_scalar(const Tensor& a, double s) { return binary_scalar(BinaryOp::mul, a, s); }
inline Tensor add_scalar(const Tensor& a, double s) { return binary_scalar(BinaryOp::add, a, s); }

// ---- reductions (tensor/ops_reduce.cpp) ----
// dims empty = all dims. keepdim keeps reduced dims as size 1.
Tensor sum(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim = false);  // int64
// Sums a broadcast gradient back down to `shape` (the adjoint of broadcasting).
Tensor sum_to(const Tensor& t, const Shape& shape);

// ---- linear algebra (tensor/ops_matmul.cpp) ----
// a [..., M, K] @ b [..., K, N] with broadcast batch dims; 1-D operands as in numpy.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- neural-network ops (tensor/ops_nn.cpp) ----
Tensor softmax(const Tensor& x);      // over the last dim
Tensor log_softmax(const Tensor& x);  // over the last dim
Tensor softmax_backward(const Tensor& y, const Tensor& gy, bool log);
// Mean loss over rows whose target is not ignore_index; logits [N, C], targets i32/i64 [N].
// Returns a 0-d fp32 tensor whatever the logits' dtype; `count` receives the rows counted.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     int64_t* count = nullptr);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                              const Tensor& grad_scale /* fp32 scalar: dL/dloss / count */);
struct LayerNormResult {
  Tensor y, mean, rstd;  // mean, rstd fp32 [rows]
};
LayerNormResult layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps);
struct LayerNormGrads {
  Tensor gx, gw, gb;
};
LayerNormGrads layer_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& w,
                                   const Tensor& mean, const Tensor& rstd, bool need_wb);
Tensor embedding(const Tensor& weight, const Tensor& idx);  // [V, D], [...] -> [..., D]
Tensor embedding_backward(const Tensor& gout, const Tensor& idx, int64_t vocab);
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);
Tensor gather(const Tensor& t, int64_t dim, const Tensor& index);
Tensor scatter_add_zeros(const Tensor& gout, int64_t dim, const Tensor& index,
                         const Shape& in_shape);  // adjoint of gather
Tensor cat(const std::vector<Tensor>& ts, int64_t dim);
std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim);

// ---- helpers for implementing ops ----
// Throws "<op>: expected all tensors on one device, got cpu and cuda:0 (shapes ...)".
void check_same_device(const char* op, const std::vector<Tensor>& ts);
void check_same_dtype(const char* op, const std::vector<Tensor>& ts);
void check_floating(const char* op, const Tensor& t);
// Scratch memory for a kernel on `d`: at least `bytes` bytes, 256-byte aligned, counted by the
// allocator like any tensor and released when the returned tensor goes. Undefined (null
// data) when bytes is 0.
Tensor workspace(Device d, size_t bytes);
// Builds the indexer for an output of `shape` and operands broadcast to it.
template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::vector<const Tensor*>& operands,
                               const char* op);

}  // namespace fg::ops
