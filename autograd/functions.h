// The differentiable ops: what users call. Each wraps a raw op of tensor/ops.h and, when an
// input requires grad, records a node whose backward is written with other raw ops.
//
// Where each lives:  views, copies, dtype/device moves     autograd/functions_view.cpp
//                    elementwise, where, reductions        autograd/functions_elementwise.cpp
//                    matmul and the neural-network ops     autograd/functions_nn.cpp
// The attention node has its own header, autograd/attention.h.
#pragma once
#include <vector>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace fg {

// ---- elementwise (broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // tanh approximation (GPT-2)
Tensor abs(const Tensor& x);
// cond: any dtype, nonzero = take a. Gradients flow to a and b, none to cond.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& t, const Tensor& mask, double value);
// Comparisons (no gradient): 1 or 0 in the operands' dtype.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// ---- reductions ----
Tensor sum(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Max values along dim; the gradient goes to the first maximal element.
Tensor max(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim = false);  // no gradient

// ---- views and copies ----
Tensor view(const Tensor& t, const Shape& s);
Tensor reshape(const Tensor& t, const Shape& s);
Tensor transpose(const Tensor& t, int64_t d0, int64_t d1);
Tensor permute(const Tensor& t, const std::vector<int64_t>& dims);
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& t, int64_t dim, int64_t index);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor expand(const Tensor& t, const Shape& s);
Tensor flatten(const Tensor& t, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor contiguous(const Tensor& t);
Tensor clone(const Tensor& t);
Tensor to(const Tensor& t, Device d);
Tensor to(const Tensor& t, DType dt);
Tensor cat(const std::vector<Tensor>& ts, int64_t dim);
std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim);

// ---- linear algebra and neural-network ops ----
Tensor matmul(const Tensor& a, const Tensor& b);
Tensor softmax(const Tensor& x, int64_t dim = -1);      // dim must be the last dim
Tensor log_softmax(const Tensor& x, int64_t dim = -1);  // dim must be the last dim
// Mean over rows whose target != ignore_index; logits [N, C] (or [..., C], flattened),
// targets i32/i64 of the leading shape. Returns an fp32 scalar.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// Over the last dim; weight and bias [C] may be undefined.
// A linear layer, y = x weight^T + bias (bias may be undefined), then GELU when gelu: one node
// and, on CUDA, one GEMM with the bias and GELU in its epilogue. x [..., in], weight [out, in].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, bool gelu = false);
// linear(gelu(linear(x, w1, b1)), w2, b2), a transformer's MLP, as one node: its backward folds
// the GELU's derivative and b1's gradient into the GEMM of the hidden gradient (on CUDA, the
// cuBLASLt DGELU_BGRAD epilogue). Biases may be undefined.
Tensor linear_gelu_linear(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2,
                          const Tensor& b2);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
Tensor embedding(const Tensor& weight, const Tensor& indices);
// Inverted dropout with the Philox mask of core/philox.h; identity when p == 0 or
// !training. The (seed, offset) pair comes from `gen` (default generator when null).
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);
// residual + dropout(x, p) as one node and one pass (the residual connection after a dropout);
// residual + x when p == 0 or !training. Draws its (seed, offset) as dropout does.
Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, bool training = true,
                   Generator* gen = nullptr);
Tensor gather(const Tensor& t, int64_t dim, const Tensor& index);

}  // namespace fg
