// The parameters of one attention call, and the masking rules every attention path shares.
//
// AttentionParams is a plain struct of raw pointers, element strides and sizes, in the style of
// flash-attn's `Flash_fwd_params`: the autograd node fills it from tensors and hands it to the
// CPU or CUDA kernels, which never see a Tensor. The element-level rule `attention_allowed`
// and the tile-level `tile_visibility` live here, host+device, so that the CPU flash path,
// the CUDA kernels and the naive (materialising) path all mask with the very same definition.
//
// Layouts (all element strides, in elements of `dtype`; the head-dim stride is always 1):
//   Q, O, dO, dQ   [B, Nq, Hq,  D]   addressed as x[b*batch + i*seq + h*head + d]
//   K, V, dK, dV   [B, Nk, Hkv, D]
//   LSE            [B, Hq, Nq]        contiguous fp32 (fp64 when dtype is f64, so that f64
//                                     gradient checks are not limited by a rounded LSE)
// Strides make a fused QKV projection [B, N, 3, H, D] usable without a copy: point q/k/v at
// its three slices and give all three seq stride 3*H*D and head stride D.
//
// The function computed, for batch b, query head h, query row i (with `scale` = softmax_scale):
//   kv head          hk = h / (Hq / Hkv)                    (MHA: Hkv = Hq; GQA; MQA: Hkv = 1)
//   S_ij             = scale * <Q_i, K_j>                   over allowed keys j only
//   LSE_i            = log sum_j exp(S_ij)                  (natural log, of the scaled scores)
//   P_ij             = exp(S_ij - LSE_i)
//   Z_ij             = attention_dropout_keep(seed, offset, batch_index_base + b, h, Hq, i, j,
//                                            threshold(p))
//   O_i              = sum_j P_ij * Z_ij / (1 - p) * V_j    (dropout keeps with prob 1 - p;
//                                            p rounded to 1/256: attention_dropout_rate)
// Masking:
//   causal           bottom-right aligned, as in flash-attn 2: query i sees keys j <= i + Nk - Nq.
//                    With Nq > Nk the first Nq - Nk rows therefore see no key at all.
//   block mask       optional uint8 [block_mask_heads, ceil(Nq/64), ceil(Nk/64)]; a zero entry
//                    hides the whole 64x64 tile of (query, key) pairs. block_mask_heads is 1
//                    (shared by all heads) or Hq. The same mask applies to every batch. It must
//                    live where the kernels run: host memory for the CPU path, device memory
//                    for the CUDA path.
//   fully masked row a row with no allowed key gets O_i = 0 and LSE_i = -infinity, and
//                    contributes zero to dQ, dK and dV (dQ_i = 0).
// Backward:
//   D_i  = rowsum(dO_i * O_i), computed in fp32 (fp64 for f64)
//   dV_j = sum_i P_ij Z_ij/(1-p) dO_i             dP_ij = <dO_i, V_j>
//   dS_ij = P_ij (dP_ij Z_ij/(1-p) - D_i)
//   dQ_i = scale * sum_j dS_ij K_j                dK_j = scale * sum_i dS_ij Q_i
//   dK, dV of a kv head are summed over the Hq/Hkv query heads that share it.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "core/half.h"  // FG_HD
#include "core/dtype.h"

namespace fg {

// Tile size of the block mask: entry (bi, bj) covers query rows [64 bi, 64 bi + 64) and key
// columns [64 bj, 64 bj + 64). Each kernel's unit of skipping (a CPU tile, a warp's or a
// warpgroup's rows, a key tile) lies inside one entry, so a masked-out entry means that work
// is skipped and its keys are never loaded (the kernels static_assert this).
constexpr int64_t kBlockMaskTileQ = 64;
constexpr int64_t kBlockMaskTileK = 64;

struct AttentionParams {
  // Inputs and outputs, in `dtype` (lse is fp32, or fp64 for f64). Forward reads q, k, v
  // and writes o, lse. Backward reads q, k, v, o, lse, do_ and writes dq, dk, dv.
  void* q = nullptr;
  void* k = nullptr;
  void* v = nullptr;
  void* o = nullptr;
  void* lse = nullptr;  // float [B, Hq, Nq], contiguous (double when dtype is f64)
  void* do_ = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  // Backward scratch for the CUDA path, flash_attention_backward_workspace_bytes() bytes,
  // allocated by the caller (contents on entry do not matter). It holds D_i and, unless
  // `deterministic`, the dQ accumulator, fp32 (fp64 when dtype is f64). The CPU path does not
  // use it (may be null).
  void* workspace = nullptr;
  // Forward scratch for the CUDA split-KV decode kernel (few query rows, long key cache),
  // flash_attention_forward_workspace_bytes() bytes (0 for calls it would not split), allocated
  // by the caller. Optional: without it that kernel runs one block per kv head, unsplit.
  void* split_workspace = nullptr;

  // Element strides over (batch, seq, head); the head-dim stride is 1.
  int64_t q_batch_stride = 0, q_seq_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_seq_stride = 0, k_head_stride = 0;
  int64_t v_batch_stride = 0, v_seq_stride = 0, v_head_stride = 0;
  int64_t o_batch_stride = 0, o_seq_stride = 0, o_head_stride = 0;
  int64_t do_batch_stride = 0, do_seq_stride = 0, do_head_stride = 0;
  int64_t dq_batch_stride = 0, dq_seq_stride = 0, dq_head_stride = 0;
  int64_t dk_batch_stride = 0, dk_seq_stride = 0, dk_head_stride = 0;
  int64_t dv_batch_stride = 0, dv_seq_stride = 0, dv_head_stride = 0;

  // Sizes: batch, query length, key length, query heads, kv heads, head dim.
  int64_t B = 0, Nq = 0, Nk = 0, Hq = 0, Hkv = 0, D = 0;
  DType dtype = DType::f32;

  double softmax_scale = 1.0;  // usually 1/sqrt(D)
  bool causal = false;         // bottom-right aligned
  double dropout_p = 0.0;      // probability of dropping, in [0, 1)
  uint64_t seed = 0, offset = 0;

  // The dropout counter's batch index of batch b is batch_index_base + b. 0 for an ordinary
  // call; a variable-length call runs its sequences one by one and gives sequence s index s,
  // so that its dropout is the batched call's, sequence for batch entry.
  int64_t batch_index_base = 0;

  // Forward only: the keys each batch entry holds, int32 [B] in the memory the kernels run in
  // (device memory for CUDA), each in [0, Nk]; null means Nk for all. Entry b is then computed
  // as a call with Nk = seqused_k[b] over the first keys of its K and V, causal offset
  // included: a KV cache of capacity Nk whose rows hold different lengths. Because the lengths
  // are read on the device, one captured CUDA graph serves every decode step (tensor/graph.h).
  // On CUDA only the split-KV decode kernel takes it (dispatch.cu), which splits the keys by
  // the capacity Nk, so the split does not change as the lengths grow. (flash-attn: seqused_k.)
  const int32_t* seqused_k = nullptr;

  const uint8_t* block_mask = nullptr;  // nullable, see above
  int64_t block_mask_heads = 1;         // 1 or Hq

  // CUDA backward: compute dQ in a separate pass over query tiles instead of fp32 atomics, so
  // that dQ (and everything else) is bit-reproducible from run to run. The CPU path is always
  // deterministic.
  bool deterministic = false;

  // Head h of batch b of each tensor (h is a kv head for k, v, dk, dv), as T*: the element of
  // row i, dim d is at [i * seq_stride + d]. And the LSE row of (b, h), as A*.
  template <typename T> FG_HD T* q_head(int64_t b, int64_t h) const {
    return at<T>(q, q_batch_stride, q_head_stride, b, h);
  }
  template <typename T> FG_HD T* k_head(int64_t b, int64_t h) const {
    return at<T>(k, k_batch_stride, k_head_stride, b, h);
  }
  template <typename T> FG_HD T* v_head(int64_t b, int64_t h) const {
    return at<T>(v, v_batch_stride, v_head_stride, b, h);
  }
  template <typename T> FG_HD T* o_head(int64_t b, int64_t h) const {
    return at<T>(o, o_batch_stride, o_head_stride, b, h);
  }
  template <typename T> FG_HD T* do_head(int64_t b, int64_t h) const {
    return at<T>(do_, do_batch_stride, do_head_stride, b, h);
  }
  template <typename T> FG_HD T* dq_head(int64_t b, int64_t h) const {
    return at<T>(dq, dq_batch_stride, dq_head_stride, b, h);
  }
  template <typename T> FG_HD T* dk_head(int64_t b, int64_t h) const {
    return at<T>(dk, dk_batch_stride, dk_head_stride, b, h);
  }
  template <typename T> FG_HD T* dv_head(int64_t b, int64_t h) const {
    return at<T>(dv, dv_batch_stride, dv_head_stride, b, h);
  }
  template <typename A> FG_HD A* lse_row(int64_t b, int64_t h) const {
    return static_cast<A*>(lse) + (b * Hq + h) * Nq;
  }

 private:
  template <typename T>
  FG_HD static T* at(void* base, int64_t batch_stride, int64_t head_stride, int64_t b, int64_t h) {
    return static_cast<T*>(base) + b * batch_stride + h * head_stride;
  }
};

// Fills every stride for contiguous [B, Nq, Hq, D] / [B, Nk, Hkv, D] tensors (sizes must be
// set first). A convenience for tests and for callers whose tensors are contiguous.
inline void set_contiguous_strides(AttentionParams& p) {
  const int64_t qh = p.D, qs = p.Hq * p.D, qb = p.Nq * p.Hq * p.D;
  const int64_t kh = p.D, ks = p.Hkv * p.D, kb = p.Nk * p.Hkv * p.D;
  p.q_batch_stride = p.o_batch_stride = p.do_batch_stride = p.dq_batch_stride = qb;
  p.q_seq_stride = p.o_seq_stride = p.do_seq_stride = p.dq_seq_stride = qs;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = qh;
  p.k_batch_stride = p.v_batch_stride = p.dk_batch_stride = p.dv_batch_stride = kb;
  p.k_seq_stride = p.v_seq_stride = p.dk_seq_stride = p.dv_seq_stride = ks;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = kh;
}

// The CUDA backward's workspace holds D_i [B, Hq, Nq] and then, at the next multiple of 256
// bytes, the dQ accumulator [B, Hq, Nq, D] (flash_attention_backward_workspace_bytes).
inline size_t attention_workspace_pad(size_t n) { return (n + 255) / 256 * 256; }

FG_HD int64_t attention_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The block-mask byte for query head h and query/key tile (bi, bj) of 64.
FG_HD bool block_mask_entry(const AttentionParams& p, int64_t h, int64_t bi, int64_t bj) {
  const int64_t nbq = attention_ceil_div(p.Nq, kBlockMaskTileQ);
  const int64_t nbk = attention_ceil_div(p.Nk, kBlockMaskTileK);
  const int64_t hm = p.block_mask_heads == 1 ? 0 : h;
  return p.block_mask[(hm * nbq + bi) * nbk + bj] != 0;
}

// Causal masking is aligned bottom right: query row i sees the keys j <= i + Nk - Nq, and key j
// is seen by the query rows i >= j - (Nk - Nq). These two are the causal offset of every path
// (rows past the ends give values outside [0, Nk) and [0, Nq)).
FG_HD int64_t causal_last_key(const AttentionParams& p, int64_t i) { return i + p.Nk - p.Nq; }
FG_HD int64_t causal_first_row(const AttentionParams& p, int64_t j) { return j - (p.Nk - p.Nq); }

// Where the key loop of query rows below q1 stops: Nk, or under causal masking
// min(Nk, causal_last_key(q1)) (the last key of row q1 - 1, plus one), which is <= 0 when
// none of them sees a key.
FG_HD int64_t key_end(const AttentionParams& p, int64_t q1) {
  if (!p.causal) return p.Nk;
  const int64_t end = p.Nk < causal_last_key(p, q1) ? p.Nk : causal_last_key(p, q1);
  return end > 0 ? end : 0;
}

// Where the query loop of key j starts: 0, or under causal masking max(0, causal_first_row(j)).
FG_HD int64_t first_query_row(const AttentionParams& p, int64_t j) {
  if (!p.causal) return 0;
  const int64_t first = causal_first_row(p, j);
  return first > 0 ? first : 0;
}

// Whether query row i of query head h may attend to key j (0 <= i < Nq, 0 <= j < Nk): the
// one element-level masking rule (causal + block mask) of every attention path.
FG_HD bool attention_allowed(const AttentionParams& p, int64_t h, int64_t i, int64_t j) {
  if (p.causal && j > causal_last_key(p, i)) return false;
  if (p.block_mask && !block_mask_entry(p, h, i / kBlockMaskTileQ, j / kBlockMaskTileK))
    return false;
  return true;
}

// What the kernels need to know about a tile of pairs [q0, q1) x [k0, k1) (clipped to Nq, Nk
// by the caller): nothing visible (skip it, do not even load it), everything visible (no
// per-element test), or a mix (test each element with attention_allowed).
enum class TileVisibility : int { empty = 0, partial = 1, full = 2 };

FG_HD TileVisibility tile_visibility(const AttentionParams& p, int64_t h, int64_t q0, int64_t q1,
                                     int64_t k0, int64_t k1) {
  if (q0 >= q1 || k0 >= k1) return TileVisibility::empty;
  bool full = true;
  if (p.causal) {
    const int64_t shift = p.Nk - p.Nq;
    if (k0 > q1 - 1 + shift) return TileVisibility::empty;  // above the diagonal everywhere
    if (k1 - 1 > q0 + shift) full = false;                   // the diagonal crosses the tile
  }
  if (p.block_mask) {
    int64_t on = 0, total = 0;
    for (int64_t bi = q0 / kBlockMaskTileQ; bi <= (q1 - 1) / kBlockMaskTileQ; ++bi)
      for (int64_t bj = k0 / kBlockMaskTileK; bj <= (k1 - 1) / kBlockMaskTileK; ++bj) {
        on += block_mask_entry(p, h, bi, bj) ? 1 : 0;
        ++total;
      }
    if (on == 0) return TileVisibility::empty;
    if (on != total) full = false;
  }
  return full ? TileVisibility::full : TileVisibility::partial;
}

}  // namespace fg
