// The attention node: options resolved (seeds from the default generator), the flash path
// (the fused raw ops of tensor/ops_attention.cpp, saves O(N)) and the naive path (ordinary
// autograd ops, materialises N x N), both computing the function stated in
// kernels/attention/params.h.
#include "autograd/attention.h"

#include "autograd/functions.h"
#include "kernels/attention/attention.h"

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

// One call's options at the op level, checked against its tensors: the block mask copied to
// their device and, for dropout without an explicit seed, (seed, offset) from the default
// generator (drawn only once the call is known to be valid).
struct Resolved {
  ops::AttentionSizes sizes;
  ops::AttentionConfig cfg;
};

Resolved resolve(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o,
                 bool flash) {
  Resolved r;
  r.cfg.scale = o.scale_;
  r.cfg.causal = o.causal_;
  r.cfg.dropout_p = o.dropout_p_;
  r.cfg.deterministic = o.deterministic_;
  if (o.block_mask_ && q.defined()) {
    const BlockMask& m = *o.block_mask_;
    r.cfg.block_mask = ops::attention_block_mask(m.bits, m.heads, m.q_blocks, m.k_blocks, q.device());
  }
  r.sizes = ops::check_attention(kOp, q, k, v, r.cfg, flash);
  if (o.dropout_p_ > 0.0) {
    r.cfg.seed = o.has_seed_ ? o.seed_ : default_generator().seed();
    r.cfg.offset = o.has_seed_ ? o.offset_ : default_generator().next_offset();
  }
  return r;
}

// The node saves these, so the backward reads the very tensors the forward's kernels did.
Tensor unit_last_stride(const Tensor& t) { return t.stride(3) == 1 ? t : ops::contiguous(t); }

Tensor flash_path(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                  const AttentionOptions& opt) {
  const ops::AttentionConfig cfg = resolve(q_in, k_in, v_in, opt, true).cfg;
  Tensor q = unit_last_stride(q_in), k = unit_last_stride(k_in), v = unit_last_stride(v_in);
  ops::FlashAttentionResult f = ops::flash_attention_forward(q, k, v, cfg);
  // The node keeps Q, K, V, O and the log-sum-exp (all O(N)) plus the config (seed, offset,
  // block mask).
  return record(
      "FlashAttentionBackward", {q_in, k_in, v_in}, f.o, {q, k, v, f.o, f.lse},
      [cfg](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
            const std::vector<bool>&) {
        ops::FlashAttentionGrads d =
            ops::flash_attention_backward(saved[0], saved[1], saved[2], saved[3], saved[4], g[0], cfg);
        return std::vector<Tensor>{d.dq, d.dk, d.dv};
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
  const Resolved r = resolve(q, k, v, opt, false);
  const int64_t Hq = r.sizes.Hq;
  Tensor qh = heads_first(q, Hq), kh = heads_first(k, Hq), vh = heads_first(v, Hq);
  Tensor s = matmul(qh, kh.transpose(-2, -1)) * r.sizes.scale;  // [B, Hq, Nq, Nk]
  bool masked = opt.causal_ || opt.block_mask_;
  Tensor row_valid;
  if (masked) {
    ops::AttentionBias bias = ops::attention_bias(q, k, r.cfg);
    s = s + bias.bias;
    row_valid = bias.row_valid;
  }
  Tensor prob = softmax(s, -1);
  if (masked) prob = prob * row_valid;  // rows with no visible key give 0, not NaN
  if (opt.dropout_p_ > 0.0) prob = prob * ops::attention_dropout_scale(q, k, r.cfg);
  return matmul(prob, vh).permute({0, 2, 1, 3}).contiguous();
}

// Sequence s of a packed tensor [total, H, D] with offsets cu: rows cu[s] .. cu[s + 1] - 1, as
// a batch of one [1, n, H, D].
Tensor sequence(const Tensor& t, const std::vector<int64_t>& cu, size_t s) {
  return t.narrow(0, cu[s], cu[s + 1] - cu[s]).unsqueeze(0);
}

void check_offsets(const char* op, const char* name, const std::vector<int64_t>& cu,
                   int64_t total) {
  FG_CHECK(cu.size() >= 2 && cu.front() == 0 && cu.back() == total, op, ": ", name,
           " must hold one offset per sequence plus one, from 0 to the packed length ", total,
           " (got ", cu.size(), " entries", cu.empty() ? "" : str(", from ", cu.front(), " to ", cu.back()),
           ")");
  for (size_t s = 0; s + 1 < cu.size(); ++s)
    FG_CHECK(cu[s + 1] >= cu[s], op, ": ", name, " must not decrease, but entry ", s + 1, " (",
             cu[s + 1], ") is below entry ", s, " (", cu[s], ")");
}

}  // namespace

Tensor varlen_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const std::vector<int64_t>& cu_seqlens_q,
                        const std::vector<int64_t>& cu_seqlens_k, const AttentionOptions& opt) {
  const char* op = "varlen_attention";
  FG_CHECK(q.defined() && k.defined() && v.defined(), op, ": q, k and v must be defined");
  FG_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, op,
           ": expected packed q [total_q, Hq, D] and k, v [total_k, Hkv, D], got q ",
           shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()));
  FG_CHECK(opt.impl_ == AttentionImpl::flash, op,
           ": packed sequences take the flash implementation only");
  FG_CHECK(!opt.block_mask_, op, ": block masks are not supported with packed sequences");
  FG_CHECK(cu_seqlens_q.size() == cu_seqlens_k.size(), op, ": cu_seqlens_q (",
           cu_seqlens_q.size(), " entries) and cu_seqlens_k (", cu_seqlens_k.size(),
           ") must describe the same number of sequences");
  check_offsets(op, "cu_seqlens_q", cu_seqlens_q, q.size(0));
  check_offsets(op, "cu_seqlens_k", cu_seqlens_k, k.size(0));
  // The packed tensors checked as one batch (dtype, device, heads, head dim), the dropout seed
  // and offset drawn once for the whole call.
  const ops::AttentionConfig cfg =
      resolve(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), opt, true).cfg;
  const size_t S = cu_seqlens_q.size() - 1;
  std::vector<int64_t> cu_q = cu_seqlens_q, cu_k = cu_seqlens_k;
  // Each sequence is a call of its own (batch index s in the dropout counter): no tile crosses
  // a sequence boundary. A sequence without keys leaves its rows of O at 0.
  Tensor o = zeros(q.shape(), TensorOptions(q.dtype()).device(q.device()));
  std::vector<Tensor> saved{q, k, v, o};
  std::vector<int64_t> lse_of(S, -1);  // index in `saved` of sequence s's LSE
  {
    NoGradGuard ng;
    for (size_t s = 0; s < S; ++s) {
      if (cu_q[s + 1] == cu_q[s] || cu_k[s + 1] == cu_k[s]) continue;
      ops::AttentionConfig c = cfg;
      c.batch_index_base = int64_t(s);
      ops::FlashAttentionResult r = ops::flash_attention_forward(
          sequence(q, cu_q, s), sequence(k, cu_k, s), sequence(v, cu_k, s), c);
      sequence(o, cu_q, s).copy_(r.o);
      lse_of[s] = int64_t(saved.size());
      saved.push_back(r.lse);
    }
  }
  return record(
      "VarlenAttentionBackward", {q, k, v}, o, saved,
      [cfg, cu_q, cu_k, lse_of](const std::vector<Tensor>& g, const std::vector<Tensor>& sv,
                                const std::vector<bool>&) {
        const Tensor &q = sv[0], &k = sv[1], &v = sv[2], &o = sv[3];
        Tensor dq = zeros(q.shape(), TensorOptions(q.dtype()).device(q.device()));
        Tensor dk = zeros(k.shape(), TensorOptions(k.dtype()).device(k.device()));
        Tensor dv = zeros(v.shape(), TensorOptions(v.dtype()).device(v.device()));
        for (size_t s = 0; s < lse_of.size(); ++s) {
          if (lse_of[s] < 0) continue;
          ops::AttentionConfig c = cfg;
          c.batch_index_base = int64_t(s);
          ops::FlashAttentionGrads d = ops::flash_attention_backward(
              sequence(q, cu_q, s), sequence(k, cu_k, s), sequence(v, cu_k, s),
              sequence(o, cu_q, s), sv[size_t(lse_of[s])], sequence(g[0], cu_q, s), c);
          sequence(dq, cu_q, s).copy_(d.dq);
          sequence(dk, cu_k, s).copy_(d.dk);
          sequence(dv, cu_k, s).copy_(d.dv);
        }
        return std::vector<Tensor>{dq, dk, dv};
      });
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options) {
  return options.impl_ == AttentionImpl::flash ? flash_path(q, k, v, options)
                                               : naive_path(q, k, v, options);
}

FlashForwardResult flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const AttentionOptions& options) {
  return ops::flash_attention_forward(q, k, v, resolve(q, k, v, options, true).cfg);
}

}  // namespace fg
