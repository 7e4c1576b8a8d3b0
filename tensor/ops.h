// The raw ops on Tensors: shape and dtype checks, output allocation, and dispatch to the CPU or
// CUDA kernel by device. No autograd here: autograd/functions.h wraps these in graph nodes, and
// backward formulas call them directly.
//
// Every op checks that its inputs share a device and dtype and throws fg::Error naming the op
// and the shapes when they don't. Results are new contiguous tensors unless the op is a view.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/optim.h"
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
// A linear layer: y = x w^T + b for x [..., K], w [N, K], b [N] (or undefined), then GELU when
// gelu; pre (with gelu and keep_pre) is the GELU's input, which its backward needs. One GEMM
// with the bias and GELU in its epilogue on CUDA (cuBLASLt); bias and GELU act before the one
// rounding.
struct LinearResult {
  Tensor y, pre;  // [..., N]
};
LinearResult linear(const Tensor& x, const Tensor& w, const Tensor& b, bool gelu,
                    bool keep_pre = true);
// residual + x w^T + b (residual of the output's shape and dtype), the addition in the same
// epilogue before the one rounding: a residual connection in one GEMM. No autograd (the
// inference step of GPT::decode_step uses it).
Tensor linear_residual(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual);
// The weight (and bias) gradient of a linear layer: gw [N, K] = gy^T x over all leading dims
// of gy [..., N] and x [..., K]; gb [N] = gy summed over them (when need_bias).
struct LinearGrads {
  Tensor gw, gb;
};
LinearGrads linear_weight_grad(const Tensor& gy, const Tensor& x, bool need_bias);
// The input gradient of a linear layer, gx = gy w for gy [..., N], w [N, K]. With pre (the
// saved input of a GELU whose output the layer took, [..., K]) the GELU's derivative is
// folded in, gx = (gy w) gelu'(pre), and gb [K] = gx summed over the leading dims (when
// need_bias: the bias gradient of the layer before the GELU). One GEMM with its epilogue on
// CUDA.
struct LinearInputGrads {
  Tensor gx, gb;
};
LinearInputGrads linear_input_grad(const Tensor& gy, const Tensor& w, const Tensor& pre,
                                   bool need_bias);

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
// k_cache[b, positions[b] + t] = k[b, t] and the same for v, for every entry b and new row t:
// appends T keys and values to each entry of a KV cache at its own position, in one launch.
// Caches [B, capacity, H, D] contiguous, k and v [B, T, H, D] of their dtype, positions i32
// [B] on the same device (read there, so a captured CUDA graph replays with new positions).
// Rows past the capacity are an error (nothing written for that entry).
void kv_cache_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k,
                    const Tensor& v, const Tensor& positions);
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);
// residual + dropout(x) in one pass, rounded once (residual: x's shape, dtype and device).
Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, uint64_t seed,
                   uint64_t offset);
Tensor gather(const Tensor& t, int64_t dim, const Tensor& index);
Tensor scatter_add_zeros(const Tensor& gout, int64_t dim, const Tensor& index,
                         const Shape& in_shape);  // adjoint of gather
Tensor cat(const std::vector<Tensor>& ts, int64_t dim);
std::vector<Tensor> split(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim);

// ---- attention (tensor/ops_attention.cpp) ----
// The function, layouts and masking rules are those of kernels/attention/params.h:
// q [B, Nq, Hq, D], k and v [B, Nk, Hkv, D] (Hq a multiple of Hkv), any strides (a head dim
// of stride other than 1 is copied first); o [B, Nq, Hq, D] and lse [B, Hq, Nq] (f32, or f64
// for f64 inputs).

// A block mask where the kernels run: bytes [heads (1 or Hq), q_blocks, k_blocks], tiles of
// kBlockMaskTileQ x kBlockMaskTileK (64 x 64), nonzero = the tile's pairs may attend.
struct AttentionBlockMask {
  std::shared_ptr<const Storage> bytes;  // null: no block mask
  int64_t heads = 1, q_blocks = 0, k_blocks = 0;
  bool defined() const { return bytes != nullptr; }
};
// Copies host mask bits ([heads, q_blocks, k_blocks] bytes) to `device`.
AttentionBlockMask attention_block_mask(const std::vector<uint8_t>& bits, int64_t heads,
                                        int64_t q_blocks, int64_t k_blocks, Device device);

struct AttentionConfig {
  double scale = 0.0;             // softmax scale; 0 means 1/sqrt(D)
  bool causal = false;            // bottom-right aligned for Nq != Nk
  double dropout_p = 0.0;         // probability of dropping, in [0, 1)
  uint64_t seed = 0, offset = 0;  // the dropout mask's Philox seed and offset
  AttentionBlockMask block_mask;  // optional, on the inputs' device
  bool deterministic = false;     // CUDA backward without atomics (bit-reproducible)
  int64_t batch_index_base = 0;   // the dropout counter's index of batch 0 (params.h)
};

struct AttentionSizes {
  int64_t B = 0, Nq = 0, Nk = 0, Hq = 0, Hkv = 0, D = 0;
  double scale = 0.0;  // the softmax scale in effect: cfg.scale, or 1/sqrt(D) when that is 0
};
// Checks q, k, v (v may be undefined) and cfg as every attention op does: 4-D, one device, one
// floating dtype, matching batch and head dim, Hq a multiple of Hkv, k and v of one shape,
// dropout in [0, 1), a block mask that fits. `flash` adds the fused kernels' own limits (the
// CUDA head dims). Errors name `op`.
AttentionSizes check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionConfig& cfg, bool flash);

// The fused kernels: nothing of size N x N is allocated.
struct FlashAttentionResult {
  Tensor o, lse;
};
FlashAttentionResult flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const AttentionConfig& cfg);
// Attention of a few new tokens against a KV cache whose entries hold different numbers of
// keys: q [B, Nq, Hq, D], k_cache and v_cache [B, capacity, Hkv, D], seqused_k i32 [B] on q's
// device; entry b attends to its first seqused_k[b] keys (causal: bottom-right at that length).
// Forward only, no dropout or block mask; returns o [B, Nq, Hq, D]. The counts are read where
// the kernel runs (on CUDA, the split-KV decode kernel), so a captured CUDA graph replays with
// new counts (tensor/graph.h).
Tensor kv_cache_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                          const Tensor& seqused_k, const AttentionConfig& cfg);
struct FlashAttentionGrads {
  Tensor dq, dk, dv;
};
// The gradients from the forward's o and lse (same q, k, v and cfg) and dout [B, Nq, Hq, D].
FlashAttentionGrads flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const Tensor& o, const Tensor& lse,
                                             const Tensor& dout, const AttentionConfig& cfg);

// What the naive (materialising) attention path adds to and multiplies its N x N scores by,
// from the same element rules as the fused kernels, in q's dtype on q's device.
struct AttentionBias {
  // bias [Hm, Nq, Nk] (Hm = the block mask's heads, else 1): 0 where a pair may attend, -inf
  // elsewhere; a row with no allowed key is all 0 and has row_valid [Hm, Nq, 1] 0 (else 1),
  // so that the softmax's NaN-free output can be zeroed there.
  Tensor bias, row_valid;
};
AttentionBias attention_bias(const Tensor& q, const Tensor& k, const AttentionConfig& cfg);
// [B, Hq, Nq, Nk]: 1/(1 - p) where the attention dropout keeps (b, h, i, j), else 0.
Tensor attention_dropout_scale(const Tensor& q, const Tensor& k, const AttentionConfig& cfg);

// ---- optimizers (tensor/ops_optim.cpp) ----
// One fused AdamW step (kernels/optim.h) of one parameter, in place: param, the moments exp_avg
// and exp_avg_sq (f32, the parameter's shape and device) and, for a bf16/f16 parameter, its
// f32 master copy (which is updated and rounded into param; undefined for an f32 parameter).
// grad has the parameter's dtype, shape and device. Bumps the version of what it writes.
void adamw_(Tensor& param, Tensor& master, const Tensor& grad, Tensor& exp_avg,
            Tensor& exp_avg_sq, const AdamWArgs& args);

// One parameter of a multi-tensor AdamW step: the tensors of adamw_ above.
struct AdamWSlot {
  Tensor param, master, grad, exp_avg, exp_avg_sq;
};
// adamw_ on every slot with the same args, in one kernel launch per batch of tensors on CUDA.
// All slots share the parameters' dtype and device; each is checked as adamw_ checks it.
void adamw_multi_(std::vector<AdamWSlot>& slots, const AdamWArgs& args);

// The sum of the squares of every element of `ts` (one floating dtype, one device), as an f64
// scalar on that device: the squared global norm of gradient clipping, in two launches on
// CUDA whatever the number of tensors. Each chunk of 8192 elements is summed in float (double
// for f64), the chunks' sums in double.
Tensor sum_squares(const std::vector<Tensor>& ts);

// ---- helpers for implementing ops ----
// Throws "<op>: expected all tensors on one device, got cpu and cuda:0 (shapes ...)".
void check_same_device(const char* op, const std::vector<Tensor>& ts);
void check_same_dtype(const char* op, const std::vector<Tensor>& ts);
void check_floating(const char* op, const Tensor& t);
// The options of a new tensor with t's dtype and device.
inline TensorOptions like(const Tensor& t) { return TensorOptions(t.dtype()).device(t.device()); }
// Scratch memory for a kernel on `d`: at least `bytes` bytes, 256-byte aligned, counted by the
// allocator like any tensor and released when the returned tensor goes. Undefined (null
// data) when bytes is 0.
Tensor workspace(Device d, size_t bytes);
// Builds the indexer for an output of `shape` and operands broadcast to it.
template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::vector<const Tensor*>& operands,
                               const char* op);

}  // namespace fg::ops
