// The raw attention ops: the fused flash forward and backward, and the masks of the naive
// path. Each checks its tensors, allocates its outputs (and the CUDA backward's scratch), fills
// an AttentionParams (kernels/attention/params.h, which states the function computed) and
// calls the CPU or the CUDA entry point of kernels/attention. No autograd: the attention node
// (autograd/attention.cpp) records the graph around these.
#include <cmath>

#include "kernels/attention/attention.h"
#include "tensor/ops.h"
#include "tensor/phase_timer.h"

// FG_ATTENTION_CALL(device, name, args...) calls name##_cuda(args...) for a CUDA device and
// name##_cpu(args...) otherwise; the CUDA entry points exist only in CUDA builds.
#ifdef FLASHGRAD_WITH_CUDA
#define FG_ATTENTION_CALL(DEVICE, NAME, ...) \
  ((DEVICE).is_cuda() ? ::fg::NAME##_cuda(__VA_ARGS__) : ::fg::NAME##_cpu(__VA_ARGS__))
#else
#define FG_ATTENTION_CALL(DEVICE, NAME, ...) \
  ((DEVICE).is_cuda() ? ::fg::no_cuda_kernel(#NAME) : ::fg::NAME##_cpu(__VA_ARGS__))
#endif

namespace fg::ops {

namespace {


// The log-sum-exp is kept in fp32, or in fp64 for f64 inputs (exact gradient checks).
DType lse_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// The kernels address [B, N, H, D] tensors through three strides and need a unit head-dim one.
Tensor unit_last_stride(const Tensor& t) { return t.stride(3) == 1 ? t : contiguous(t); }

// t's data pointer, with its (batch, seq, head) strides written into b, s, h.
void* bind(const Tensor& t, int64_t& b, int64_t& s, int64_t& h) {
  b = t.stride(0);
  s = t.stride(1);
  h = t.stride(2);
  return t.data_ptr();
}

// v may be null (the naive path's masks do not read it).
AttentionSizes check_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor* v,
                            const AttentionConfig& cfg, bool flash) {
  FG_CHECK(q.defined() && k.defined() && (!v || v->defined()), op,
           v ? ": q, k and v must be defined" : ": q and k must be defined");
  FG_CHECK(q.dim() == 4 && k.dim() == 4 && (!v || v->dim() == 4), op,
           ": expected q [B, Nq, Hq, D] and k, v [B, Nk, Hkv, D], got q ", shape_str(q.shape()),
           ", k ", shape_str(k.shape()), v ? str(", v ", shape_str(v->shape())) : std::string());
  check_same_device(op, {q, k, v ? *v : Tensor()});
  check_same_dtype(op, {q, k, v ? *v : Tensor()});
  check_floating(op, q);
  AttentionSizes s;
  s.B = q.size(0);
  s.Nq = q.size(1);
  s.Hq = q.size(2);
  s.D = q.size(3);
  s.Nk = k.size(1);
  s.Hkv = k.size(2);
  if (v)
    FG_CHECK(k.shape() == v->shape(), op, ": k ", shape_str(k.shape()), " and v ",
             shape_str(v->shape()), " must have the same shape");
  FG_CHECK(k.size(0) == s.B && k.size(3) == s.D, op, ": q ", shape_str(q.shape()), " and k ",
           shape_str(k.shape()), " must agree in batch and head dim");
  FG_CHECK(s.Hkv > 0 && s.Hq % s.Hkv == 0, op, ": the query heads (", s.Hq,
           ") must be a multiple of the key/value heads (", s.Hkv, ") for MHA, GQA or MQA");
  FG_CHECK(cfg.dropout_p >= 0.0 && cfg.dropout_p < 1.0, op, ": dropout probability ",
           cfg.dropout_p, " is outside [0, 1)");
  if (flash && q.is_cuda())
    FG_CHECK(attention_cuda_supports_head_dim(s.D, q.dtype()), op, ": head dim ", s.D, " in ",
             dtype_name(q.dtype()), " is not supported by the CUDA flash kernels (use ",
             attention_cuda_head_dims(), ", or the naive attention)");
  if (cfg.block_mask.defined()) {
    const AttentionBlockMask& m = cfg.block_mask;
    const int64_t qb = (s.Nq + kBlockMaskTileQ - 1) / kBlockMaskTileQ;
    const int64_t kb = (s.Nk + kBlockMaskTileK - 1) / kBlockMaskTileK;
    FG_CHECK((m.heads == 1 || m.heads == s.Hq) && m.q_blocks == qb && m.k_blocks == kb, op,
             ": block mask of ", m.heads, " x ", m.q_blocks, " x ", m.k_blocks,
             " tiles does not fit Nq ", s.Nq, ", Nk ", s.Nk, ", Hq ", s.Hq, " (expected 1 or ",
             s.Hq, " x ", qb, " x ", kb, " tiles of 64 x 64; build the mask for these lengths)");
    FG_CHECK(m.bytes->device() == q.device(), op, ": the block mask is on ",
             m.bytes->device().str(), " but q is on ", q.device().str(),
             "; make it with attention_block_mask(..., q.device())");
  }
  s.scale = cfg.scale != 0.0 ? cfg.scale : 1.0 / std::sqrt(double(s.D));
  return s;
}

// Everything but the tensors' addresses: sizes, dtype and options.
AttentionParams make_params(const AttentionSizes& s, DType dtype, const AttentionConfig& cfg) {
  AttentionParams p;
  p.B = s.B;
  p.Nq = s.Nq;
  p.Nk = s.Nk;
  p.Hq = s.Hq;
  p.Hkv = s.Hkv;
  p.D = s.D;
  p.dtype = dtype;
  p.softmax_scale = s.scale;
  p.causal = cfg.causal;
  p.dropout_p = cfg.dropout_p;
  p.seed = cfg.seed;
  p.offset = cfg.offset;
  if (cfg.block_mask.defined()) {
    p.block_mask = static_cast<const uint8_t*>(cfg.block_mask.bytes->data());
    p.block_mask_heads = cfg.block_mask.heads;
  }
  p.deterministic = cfg.deterministic;
  p.batch_index_base = cfg.batch_index_base;
  return p;
}

// The params of a flash call reading q, k, v (unit head-dim stride).
AttentionParams flash_params(const AttentionSizes& s, const Tensor& q, const Tensor& k,
                             const Tensor& v, const AttentionConfig& cfg) {
  AttentionParams p = make_params(s, q.dtype(), cfg);
  p.q = bind(q, p.q_batch_stride, p.q_seq_stride, p.q_head_stride);
  p.k = bind(k, p.k_batch_stride, p.k_seq_stride, p.k_head_stride);
  p.v = bind(v, p.v_batch_stride, p.v_seq_stride, p.v_head_stride);
  return p;
}

}  // namespace

AttentionBlockMask attention_block_mask(const std::vector<uint8_t>& bits, int64_t heads,
                                        int64_t q_blocks, int64_t k_blocks, Device device) {
  FG_CHECK(heads > 0 && q_blocks >= 0 && k_blocks >= 0 &&
               int64_t(bits.size()) == heads * q_blocks * k_blocks,
           "attention_block_mask: ", bits.size(), " mask bytes for ", heads, " x ", q_blocks,
           " x ", k_blocks, " tiles; give one byte per (head, query tile, key tile)");
  auto bytes = std::make_shared<Storage>(device, bits.size());
  copy_bytes(bytes->data(), device, bits.data(), Device::cpu(), bits.size());
  AttentionBlockMask m;
  m.bytes = std::move(bytes);
  m.heads = heads;
  m.q_blocks = q_blocks;
  m.k_blocks = k_blocks;
  return m;
}

AttentionSizes check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionConfig& cfg, bool flash) {
  return check_inputs(op, q, k, &v, cfg, flash);
}

namespace {
// The fused forward, with per-entry key lengths when seqused_k is defined (kv_cache_attention).
FlashAttentionResult forward(const char* op, const Tensor& q_in, const Tensor& k_in,
                             const Tensor& v_in, const Tensor& seqused_k,
                             const AttentionConfig& cfg) {
  const AttentionSizes s = check_inputs(op, q_in, k_in, &v_in, cfg, true);
  Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  FlashAttentionResult r;
  r.o = empty({s.B, s.Nq, s.Hq, s.D}, like(q));
  r.lse = empty({s.B, s.Hq, s.Nq}, TensorOptions(lse_dtype(q.dtype())).device(q.device()));
  AttentionParams p = flash_params(s, q, k, v, cfg);
  p.o = bind(r.o, p.o_batch_stride, p.o_seq_stride, p.o_head_stride);
  p.lse = r.lse.data_ptr();
  if (seqused_k.defined()) p.seqused_k = seqused_k.data<int32_t>();
  Tensor scratch;  // the split-KV decode kernel's partial results
#ifdef FLASHGRAD_WITH_CUDA
  if (q.is_cuda()) {
    scratch = workspace(q.device(), flash_attention_forward_workspace_bytes(p));
    p.split_workspace = scratch.defined() ? scratch.data_ptr() : nullptr;
  }
#endif
  {
    PhaseScope timing(Phase::attention, q.device());
    FG_ATTENTION_CALL(q.device(), flash_attention_forward, p);
  }
  return r;
}
}  // namespace

FlashAttentionResult flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                             const AttentionConfig& cfg) {
  return forward("flash_attention_forward", q, k, v, Tensor(), cfg);
}

Tensor kv_cache_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                          const Tensor& seqused_k, const AttentionConfig& cfg) {
  const char* op = "kv_cache_attention";
  FG_CHECK(seqused_k.defined() && seqused_k.dtype() == DType::i32 && seqused_k.dim() == 1, op,
           ": seqused_k must be an i32 vector [B] of key counts, got ",
           seqused_k.defined() ? str(dtype_name(seqused_k.dtype()), " ", shape_str(seqused_k.shape()))
                               : std::string("an undefined tensor"));
  FG_CHECK(q.defined() && seqused_k.size(0) == q.size(0) && seqused_k.device() == q.device(), op,
           ": seqused_k ", shape_str(seqused_k.shape()), " on ", seqused_k.device().str(),
           " must hold one count per batch entry of q ",
           q.defined() ? shape_str(q.shape()) : std::string("(undefined)"), ", on q's device");
  FG_CHECK(cfg.dropout_p == 0.0 && !cfg.block_mask.defined(), op,
           ": no dropout or block mask here (inference against a cache)");
  return forward(op, q, k_cache, v_cache, contiguous(seqused_k), cfg).o;
}

FlashAttentionGrads flash_attention_backward(const Tensor& q_in, const Tensor& k_in,
                                             const Tensor& v_in, const Tensor& o_in,
                                             const Tensor& lse_in, const Tensor& dout_in,
                                             const AttentionConfig& cfg) {
  const char* op = "flash_attention_backward";
  const AttentionSizes s = check_inputs(op, q_in, k_in, &v_in, cfg, true);
  const Shape o_shape{s.B, s.Nq, s.Hq, s.D}, lse_shape{s.B, s.Hq, s.Nq};
  FG_CHECK(o_in.defined() && dout_in.defined() && lse_in.defined(), op,
           ": o, lse and dout must be defined");
  check_same_device(op, {q_in, o_in, lse_in, dout_in});
  check_same_dtype(op, {q_in, o_in, dout_in});
  FG_CHECK(o_in.shape() == o_shape && dout_in.shape() == o_shape, op, ": o ",
           shape_str(o_in.shape()), " and dout ", shape_str(dout_in.shape()),
           " must have q's shape ", shape_str(o_shape));
  FG_CHECK(lse_in.shape() == lse_shape && lse_in.dtype() == lse_dtype(q_in.dtype()), op,
           ": lse must be the forward's ", dtype_name(lse_dtype(q_in.dtype())), " ",
           shape_str(lse_shape), ", got ", dtype_name(lse_in.dtype()), " ",
           shape_str(lse_in.shape()));
  Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  Tensor o = unit_last_stride(o_in), lse = contiguous(lse_in), dout = contiguous(dout_in);
  FlashAttentionGrads g;
  g.dq = empty(q.shape(), like(q));
  g.dk = empty(k.shape(), like(k));
  g.dv = empty(v.shape(), like(v));
  AttentionParams p = flash_params(s, q, k, v, cfg);
  p.o = bind(o, p.o_batch_stride, p.o_seq_stride, p.o_head_stride);
  p.lse = lse.data_ptr();
  p.do_ = bind(dout, p.do_batch_stride, p.do_seq_stride, p.do_head_stride);
  p.dq = bind(g.dq, p.dq_batch_stride, p.dq_seq_stride, p.dq_head_stride);
  p.dk = bind(g.dk, p.dk_batch_stride, p.dk_seq_stride, p.dk_head_stride);
  p.dv = bind(g.dv, p.dv_batch_stride, p.dv_seq_stride, p.dv_head_stride);
  Tensor scratch;  // D_i and the dQ accumulator of the CUDA backward
  if (q.is_cuda()) {
    scratch = workspace(q.device(), flash_attention_backward_workspace_bytes(p));
    p.workspace = scratch.defined() ? scratch.data_ptr() : nullptr;
  }
  {
    PhaseScope timing(Phase::attention, q.device());
    FG_ATTENTION_CALL(q.device(), flash_attention_backward, p);
  }
  return g;
}

AttentionBias attention_bias(const Tensor& q, const Tensor& k, const AttentionConfig& cfg) {
  const AttentionSizes s = check_inputs("attention_bias", q, k, nullptr, cfg, false);
  const int64_t hm = cfg.block_mask.defined() ? cfg.block_mask.heads : 1;
  AttentionBias r;
  r.bias = empty({hm, s.Nq, s.Nk}, like(q));
  r.row_valid = empty({hm, s.Nq, 1}, like(q));
  FG_ATTENTION_CALL(q.device(), attention_bias, make_params(s, q.dtype(), cfg), q.dtype(),
                    r.bias.data_ptr(), r.row_valid.data_ptr());
  return r;
}

Tensor attention_dropout_scale(const Tensor& q, const Tensor& k, const AttentionConfig& cfg) {
  const AttentionSizes s = check_inputs("attention_dropout_scale", q, k, nullptr, cfg, false);
  Tensor scale = empty({s.B, s.Hq, s.Nq, s.Nk}, like(q));
  FG_ATTENTION_CALL(q.device(), attention_dropout_scale, make_params(s, q.dtype(), cfg),
                    q.dtype(), scale.data_ptr());
  return scale;
}

}  // namespace fg::ops
