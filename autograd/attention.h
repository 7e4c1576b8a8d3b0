// scaled_dot_product_attention: the attention node of flashgrad, with two implementations of
// one function (kernels/attention/params.h states it exactly):
//   flash  the fused kernels (CPU or CUDA): the node saves Q, K, V, O, the log-sum-exp and the
//          dropout seed/offset, nothing of size N x N; backward recomputes P tile by tile.
//   naive  ordinary autograd ops (matmul, scale, mask, softmax, dropout with the same Philox
//          mask, matmul) that materialise the N x N scores: the oracle and the memory baseline.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace fg {

enum class AttentionImpl { flash, naive };
AttentionImpl attention_impl_from_string(const std::string& s);
const char* attention_impl_name(AttentionImpl i);

// A block mask: [heads (1 or Hq), ceil(Nq/64), ceil(Nk/64)] bytes, nonzero = tile visible.
struct BlockMask {
  std::vector<uint8_t> bits;
  int64_t heads = 1;
  int64_t q_blocks = 0, k_blocks = 0;
  static BlockMask sliding_window(int64_t Nq, int64_t Nk, int64_t window, bool causal);
  static BlockMask global_local(int64_t Nq, int64_t Nk, int64_t num_global, int64_t window);
};

struct AttentionOptions {
  AttentionImpl impl_ = AttentionImpl::flash;
  bool causal_ = false;
  double dropout_p_ = 0.0;
  double scale_ = 0.0;  // 0 means 1/sqrt(D)
  // Dropout randomness: when has_seed_ is false, (seed, offset) come from the default
  // generator (one offset per call), as torch's dropout does.
  bool has_seed_ = false;
  uint64_t seed_ = 0, offset_ = 0;
  std::shared_ptr<const BlockMask> block_mask_;
  bool deterministic_ = false;  // CUDA backward without atomics (bit-reproducible)

  AttentionOptions& impl(AttentionImpl i) { impl_ = i; return *this; }
  AttentionOptions& causal(bool c = true) { causal_ = c; return *this; }
  AttentionOptions& dropout(double p) { dropout_p_ = p; return *this; }
  AttentionOptions& scale(double s) { scale_ = s; return *this; }
  AttentionOptions& seed(uint64_t s, uint64_t offset = 0) {
    has_seed_ = true; seed_ = s; offset_ = offset; return *this;
  }
  AttentionOptions& block_mask(BlockMask m) {
    block_mask_ = std::make_shared<const BlockMask>(std::move(m)); return *this;
  }
  AttentionOptions& deterministic(bool d = true) { deterministic_ = d; return *this; }
};

// q [B, Nq, Hq, D], k and v [B, Nk, Hkv, D] (Hq a multiple of Hkv); returns o [B, Nq, Hq, D].
// Inputs may be strided views (e.g. slices of a fused QKV projection) with a unit last stride.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options = {});

// Variable-length attention, as flash-attn's varlen API: sequences of different lengths
// packed along the first axis, q [total_q, Hq, D], k and v [total_k, Hkv, D]. Sequence s owns
// query rows cu_seqlens_q[s] .. cu_seqlens_q[s + 1] - 1 and key rows cu_seqlens_k[s] ..
// cu_seqlens_k[s + 1] - 1 (host offsets, from 0 to the packed lengths, non-decreasing; a
// sequence may be empty). It computes, for every s, scaled_dot_product_attention of its rows
// alone, with causal masking bottom-right within the sequence, GQA, and dropout by the same
// Philox rule with batch index s: exactly what a batched call over sequences of equal lengths
// computes for batch entry s. Returns o [total_q, Hq, D]; rows of a sequence without keys are 0.
// The flash implementation only, without block masks. It runs the fused kernels once per
// sequence (so no tile ever crosses a sequence boundary).
Tensor varlen_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const std::vector<int64_t>& cu_seqlens_q,
                        const std::vector<int64_t>& cu_seqlens_k,
                        const AttentionOptions& options = {});

// The flash forward alone, returning o and the log-sum-exp [B, Hq, Nq] (fp32; fp64 for f64
// inputs): ops::flash_attention_forward with the options resolved as the node resolves them.
// No graph is recorded. For tests and benchmarks.
using FlashForwardResult = ops::FlashAttentionResult;
FlashForwardResult flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const AttentionOptions& options);

}  // namespace fg
