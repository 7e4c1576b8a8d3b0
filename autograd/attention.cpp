// The attention node: argument checks, the flash path (fused kernels, saves O(N)) and the
// naive path (ordinary ops, materialises N x N), both computing the function stated in
// kernels/attention/params.h.
#include "autograd/attention.h"

#include <cmath>

#include "autograd/functions.h"
#include "kernels/attention/attention.h"
#include "kernels/attention/naive_masks.h"

namespace fg {

AttentionImpl attention_impl_from_string(const std::string& s) {
  if (s == "flash") return AttentionImpl::flash;
  if (s == "naive") return AttentionImpl::naive;
  throw Error(str("unknown attention implementation '", s, "': use flash or naive"));
}

const char* attention_impl_name(AttentionImpl i) {
  return i == AttentionImpl::flash ? "flash" : "naive";
}

namespace {
// A head-shared BlockMask around the tile bits a builder of kernels/attention made.
BlockMask shared_block_mask(std::vector<uint8_t> bits, int64_t Nq, int64_t Nk) {
  BlockMask m;
  m.bits = std::move(bits);
  m.q_blocks = (Nq + kBlockMaskTileQ - 1) / kBlockMaskTileQ;
  m.k_blocks = (Nk + kBlockMaskTileK - 1) / kBlockMaskTileK;
  return m;
}
}  // namespace

BlockMask BlockMask::sliding_window(int64_t Nq, int64_t Nk, int64_t window, bool causal) {
  return shared_block_mask(sliding_window_block_mask(Nq, Nk, window, causal), Nq, Nk);
}

BlockMask BlockMask::global_local(int64_t Nq, int64_t Nk, int64_t num_global, int64_t window) {
  return shared_block_mask(global_local_block_mask(Nq, Nk, num_global, window), Nq, Nk);
}

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

// Everything one call needs beyond the tensors, resolved once.
struct Resolved {
  int64_t B, Nq, Nk, Hq, Hkv, D;
  double scale;
  uint64_t seed = 0, offset = 0;
  std::shared_ptr<Storage> mask_storage;  // the block mask where the kernels run
};

Resolved resolve(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  FG_CHECK(q.defined() && k.defined() && v.defined(), kOp, ": q, k and v must be defined");
  FG_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, kOp,
           ": expected q [B, Nq, Hq, D] and k, v [B, Nk, Hkv, D], got q ", shape_str(q.shape()),
           ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()));
  ops::check_same_device(kOp, {q, k, v});
  ops::check_same_dtype(kOp, {q, k, v});
  ops::check_floating(kOp, q);
  Resolved r;
  r.B = q.size(0);
  r.Nq = q.size(1);
  r.Hq = q.size(2);
  r.D = q.size(3);
  r.Nk = k.size(1);
  r.Hkv = k.size(2);
  FG_CHECK(k.shape() == v.shape(), kOp, ": k ", shape_str(k.shape()), " and v ",
           shape_str(v.shape()), " must have the same shape");
  FG_CHECK(k.size(0) == r.B && k.size(3) == r.D, kOp, ": q ", shape_str(q.shape()), " and k ",
           shape_str(k.shape()), " must agree in batch and head dim");
  FG_CHECK(r.Hkv > 0 && r.Hq % r.Hkv == 0, kOp, ": the query heads (", r.Hq,
           ") must be a multiple of the key/value heads (", r.Hkv, ") for MHA, GQA or MQA");
  FG_CHECK(o.dropout_p_ >= 0.0 && o.dropout_p_ < 1.0, kOp, ": dropout probability ",
           o.dropout_p_, " is outside [0, 1)");
  if (q.is_cuda() && o.impl_ == AttentionImpl::flash)
    FG_CHECK(attention_cuda_supports_head_dim(r.D), kOp, ": head dim ", r.D, " is not supported by the CUDA flash kernels (use 32, 64 "
             "or 128, or impl naive)");
  r.scale = o.scale_ != 0.0 ? o.scale_ : 1.0 / std::sqrt(double(r.D));
  if (o.dropout_p_ > 0.0) {
    if (o.has_seed_) {
      r.seed = o.seed_;
      r.offset = o.offset_;
    } else {
      r.seed = default_generator().seed();
      r.offset = default_generator().next_offset();
    }
  }
  if (o.block_mask_) {
    const BlockMask& m = *o.block_mask_;
    int64_t qb = (r.Nq + kBlockMaskTileQ - 1) / kBlockMaskTileQ;
    int64_t kb = (r.Nk + kBlockMaskTileK - 1) / kBlockMaskTileK;
    FG_CHECK((m.heads == 1 || m.heads == r.Hq) && m.q_blocks == qb && m.k_blocks == kb &&
                 int64_t(m.bits.size()) == m.heads * qb * kb,
             kOp, ": block mask of ", m.heads, " x ", m.q_blocks, " x ", m.k_blocks,
             " tiles does not fit Nq ", r.Nq, ", Nk ", r.Nk, ", Hq ", r.Hq, " (expected 1 or ", r.Hq,
             " x ", qb, " x ", kb, " tiles of 64 x 64; build it with BlockMask::sliding_window or "
             "global_local for these lengths)");
    r.mask_storage = std::make_shared<Storage>(q.device(), m.bits.size());
    copy_bytes(r.mask_storage->data(), q.device(), m.bits.data(), Device::cpu(), m.bits.size());
  }
  return r;
}

// A tensor usable by the kernels: unit stride in the head dim.
Tensor unit_last_stride(const Tensor& t) { return t.stride(3) == 1 ? t : ops::contiguous(t); }

AttentionParams make_params(const Resolved& r, const Tensor& q, const Tensor& k, const Tensor& v,
                            const AttentionOptions& o) {
  AttentionParams p;
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.q_batch_stride = q.stride(0);
  p.q_seq_stride = q.stride(1);
  p.q_head_stride = q.stride(2);
  p.k_batch_stride = k.stride(0);
  p.k_seq_stride = k.stride(1);
  p.k_head_stride = k.stride(2);
  p.v_batch_stride = v.stride(0);
  p.v_seq_stride = v.stride(1);
  p.v_head_stride = v.stride(2);
  p.B = r.B;
  p.Nq = r.Nq;
  p.Nk = r.Nk;
  p.Hq = r.Hq;
  p.Hkv = r.Hkv;
  p.D = r.D;
  p.dtype = q.dtype();
  p.softmax_scale = r.scale;
  p.causal = o.causal_;
  p.dropout_p = o.dropout_p_;
  p.seed = r.seed;
  p.offset = r.offset;
  if (r.mask_storage) {
    p.block_mask = static_cast<const uint8_t*>(r.mask_storage->data());
    p.block_mask_heads = o.block_mask_->heads;
  }
  p.deterministic = o.deterministic_;
  return p;
}

void set_out_strides(AttentionParams& p, const Tensor& t, int64_t& b, int64_t& s, int64_t& h) {
  (void)p;
  b = t.stride(0);
  s = t.stride(1);
  h = t.stride(2);
}

DType lse_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

FlashForwardResult flash_forward(const Resolved& r, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const AttentionOptions& opt) {
  TensorOptions to = TensorOptions(q.dtype()).device(q.device());
  Tensor o = empty({r.B, r.Nq, r.Hq, r.D}, to);
  Tensor lse = empty({r.B, r.Hq, r.Nq}, TensorOptions(lse_dtype(q.dtype())).device(q.device()));
  AttentionParams p = make_params(r, q, k, v, opt);
  p.o = o.data_ptr();
  p.lse = lse.data_ptr();
  set_out_strides(p, o, p.o_batch_stride, p.o_seq_stride, p.o_head_stride);
  if (q.is_cuda()) {
#ifdef FLASHGRAD_WITH_CUDA
    flash_attention_forward_cuda(p);
#endif
  } else {
    flash_attention_forward_cpu(p);
  }
  return {o, lse};
}

Tensor flash_path(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                  const AttentionOptions& opt) {
  Resolved r = resolve(q_in, k_in, v_in, opt);
  Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  FlashForwardResult f;
  {
    NoGradGuard no_grad;
    f = flash_forward(r, q, k, v, opt);
  }
  // The node keeps Q, K, V, O and the log-sum-exp (all O(N)) plus the seed and offset.
  return record(
      "FlashAttentionBackward", {q_in, k_in, v_in}, f.o, {q, k, v, f.o, f.lse},
      [r, opt](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
               const std::vector<bool>&) {
        const Tensor &q = saved[0], &k = saved[1], &v = saved[2], &o = saved[3], &lse = saved[4];
        Tensor dout = ops::contiguous(g[0]);
        TensorOptions to = TensorOptions(q.dtype()).device(q.device());
        Tensor dq = empty(q.shape(), to), dk = empty(k.shape(), to), dv = empty(v.shape(), to);
        AttentionParams p = make_params(r, q, k, v, opt);
        p.o = o.data_ptr();
        p.lse = lse.data_ptr();
        p.do_ = dout.data_ptr();
        p.dq = dq.data_ptr();
        p.dk = dk.data_ptr();
        p.dv = dv.data_ptr();
        set_out_strides(p, o, p.o_batch_stride, p.o_seq_stride, p.o_head_stride);
        set_out_strides(p, dout, p.do_batch_stride, p.do_seq_stride, p.do_head_stride);
        set_out_strides(p, dq, p.dq_batch_stride, p.dq_seq_stride, p.dq_head_stride);
        set_out_strides(p, dk, p.dk_batch_stride, p.dk_seq_stride, p.dk_head_stride);
        set_out_strides(p, dv, p.dv_batch_stride, p.dv_seq_stride, p.dv_head_stride);
        if (q.is_cuda()) {
#ifdef FLASHGRAD_WITH_CUDA
          size_t ws_bytes = flash_attention_backward_workspace_bytes(p);
          Tensor ws = empty({int64_t((ws_bytes + 3) / 4)}, TensorOptions(DType::f32).device(q.device()));
          p.workspace = ws.data_ptr();
          flash_attention_backward_cuda(p);
#endif
        } else {
          flash_attention_backward_cpu(p);
        }
        return std::vector<Tensor>{dq, dk, dv};
      });
}

// [B, N, H, D] -> [B, Hq, N, D], repeating each kv head Hq / H times for GQA / MQA.
Tensor heads_first(const Tensor& t, int64_t Hq) {
  Tensor x = t.permute({0, 2, 1, 3});
  int64_t H = x.size(1);
  if (H == Hq) return x;
  int64_t G = Hq / H;
  return x.unsqueeze(2).expand({x.size(0), H, G, x.size(2), x.size(3)})
      .reshape({x.size(0), Hq, x.size(2), x.size(3)});
}

Tensor naive_path(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opt) {
  Resolved r = resolve(q, k, v, opt);
  AttentionParams p = make_params(r, q, k, v, opt);
  TensorOptions to = TensorOptions(q.dtype()).device(q.device());
  bool cuda = q.is_cuda();

  Tensor qh = heads_first(q, r.Hq), kh = heads_first(k, r.Hq), vh = heads_first(v, r.Hq);
  Tensor s = matmul(qh, kh.transpose(-2, -1)) * r.scale;  // [B, Hq, Nq, Nk]
  bool masked = opt.causal_ || opt.block_mask_;
  Tensor row_valid;
  if (masked) {
    int64_t hm = opt.block_mask_ ? p.block_mask_heads : 1;
    Tensor bias = empty({hm, r.Nq, r.Nk}, to);
    row_valid = empty({hm, r.Nq, 1}, to);
    if (cuda) {
#ifdef FLASHGRAD_WITH_CUDA
      attention_bias_cuda(p, q.dtype(), bias.data_ptr(), row_valid.data_ptr());
#endif
    } else {
      attention_bias_cpu(p, q.dtype(), bias.data_ptr(), row_valid.data_ptr());
    }
    s = s + bias;
  }
  Tensor prob = softmax(s, -1);
  if (masked) prob = prob * row_valid;  // rows with no visible key give 0, not NaN
  if (opt.dropout_p_ > 0.0) {
    Tensor keep = empty({r.B, r.Hq, r.Nq, r.Nk}, to);
    if (cuda) {
#ifdef FLASHGRAD_WITH_CUDA
      attention_dropout_scale_cuda(p, q.dtype(), keep.data_ptr());
#endif
    } else {
      attention_dropout_scale_cpu(p, q.dtype(), keep.data_ptr());
    }
    prob = prob * keep;
  }
  return matmul(prob, vh).permute({0, 2, 1, 3}).contiguous();
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options) {
  return options.impl_ == AttentionImpl::flash ? flash_path(q, k, v, options)
                                               : naive_path(q, k, v, options);
}

FlashForwardResult flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const AttentionOptions& options) {
  Resolved r = resolve(q, k, v, options);
  return flash_forward(r, unit_last_stride(q), unit_last_stride(k), unit_last_stride(v), options);
}

}  // namespace fg
