// Host-side pieces shared by the CPU and CUDA attention paths: the argument check, the size of
// the CUDA backward workspace and the block-mask builders. Compiled in every build.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/attention/attention.h"
#include "core/error.h"

namespace fg {

bool attention_cuda_supports_head_dim(int64_t D, DType dtype) {
  return D == 32 || D == 64 || D == 96 || D == 128 || (D == 256 && dtype != DType::f64);
}
const char* attention_cuda_head_dims() { return "32, 64, 96, 128 or 256 (256 not in f64)"; }

void check_attention_params(const AttentionParams& p, bool backward, bool cuda) {
  const char* who = backward
                        ? (cuda ? "flash_attention_backward_cuda" : "flash_attention_backward_cpu")
                        : (cuda ? "flash_attention_forward_cuda" : "flash_attention_forward_cpu");
  FG_CHECK(p.B > 0 && p.Nq > 0 && p.Nk > 0 && p.Hq > 0 && p.Hkv > 0 && p.D > 0, who,
           ": every size must be positive, got B=", p.B, " Nq=", p.Nq, " Nk=", p.Nk, " Hq=", p.Hq,
           " Hkv=", p.Hkv, " D=", p.D, "; set all six sizes of AttentionParams");
  FG_CHECK(p.Hq % p.Hkv == 0, who, ": the number of query heads Hq=", p.Hq,
           " must be a multiple of the number of kv heads Hkv=", p.Hkv,
           " (MHA: Hkv = Hq, GQA: Hq = g * Hkv, MQA: Hkv = 1)");
  if (cuda) {
    FG_CHECK(attention_cuda_supports_head_dim(p.D, p.dtype), who, ": head dim D=", p.D, " in ",
             dtype_name(p.dtype), " is not supported by the CUDA kernels (supported: ",
             attention_cuda_head_dims(), "); pad the head dim or use the CPU / naive path");
  }
  FG_CHECK(p.dtype == DType::f32 || p.dtype == DType::f64 || p.dtype == DType::bf16 ||
               p.dtype == DType::f16,
           who, ": dtype ", dtype_name(p.dtype), " is not supported (use f32, f64, bf16 or f16)");
  FG_CHECK(p.dropout_p >= 0.0 && p.dropout_p < 1.0, who, ": dropout probability p=",
           p.dropout_p, " must satisfy 0 <= p < 1");
  FG_CHECK(std::isfinite(p.softmax_scale), who, ": softmax_scale=", p.softmax_scale,
           " must be finite (usually 1/sqrt(D))");
  FG_CHECK(p.q && p.k && p.v, who, ": q, k and v must be non-null pointers");
  FG_CHECK(p.o && p.lse, who, ": o and lse must be non-null pointers",
           backward ? " (the backward reads the forward's O and LSE)" : "");
  if (backward) {
    FG_CHECK(p.do_ && p.dq && p.dk && p.dv, who,
             ": do_, dq, dk and dv must be non-null pointers");
    if (cuda)
      FG_CHECK(
          p.workspace, who, ": workspace must point to flash_attention_backward_workspace_bytes(",
          "params) = ", flash_attention_backward_workspace_bytes(p), " bytes of device memory");
  }
  FG_CHECK(!(backward && p.seqused_k), who, ": seqused_k (per-entry key lengths) is for the "
           "forward of inference only; the backward needs every entry's keys laid out in full");
  if (p.block_mask)
    FG_CHECK(p.block_mask_heads == 1 || p.block_mask_heads == p.Hq, who,
             ": block_mask_heads=", p.block_mask_heads, " must be 1 or Hq=", p.Hq);
  // The dropout counter packs b * Hq + h, i and j into 32-bit words (b * Hq + h below the
  // stream tags of core/philox.h).
  const int64_t u32 = int64_t(std::numeric_limits<uint32_t>::max());
  FG_CHECK(p.batch_index_base >= 0, who, ": batch_index_base=", p.batch_index_base,
           " must be >= 0");
  FG_CHECK((p.batch_index_base + p.B) * p.Hq < u32 - 1 && p.Nq <= u32 && p.Nk <= u32, who,
           ": B*Hq must be below 2^32 - 2 and Nq, Nk must fit in 32 bits (the dropout counter), got B*Hq=",
           p.B * p.Hq, " Nq=", p.Nq, " Nk=", p.Nk);
}

size_t flash_attention_backward_workspace_bytes(const AttentionParams& p) {
  const size_t acc = p.dtype == DType::f64 ? 8 : 4;
  size_t bytes = attention_workspace_pad(size_t(p.B * p.Hq * p.Nq) * acc);  // D_i
  if (!p.deterministic)
    bytes += attention_workspace_pad(size_t(p.B * p.Hq * p.Nq * p.D) * acc);  // dQ accumulator
  return bytes;
}

namespace {
// Whether the closed intervals [a0, a1] and [b0, b1] overlap.
bool overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) { return a0 <= b1 && b0 <= a1; }
}  // namespace

std::vector<uint8_t> sliding_window_block_mask(int64_t Nq, int64_t Nk, int64_t window,
                                               bool causal) {
  FG_CHECK(Nq > 0 && Nk > 0 && window >= 0, "sliding_window_block_mask: need Nq > 0, Nk > 0 and "
           "window >= 0, got Nq=", Nq, " Nk=", Nk, " window=", window);
  const int64_t nbq = (Nq + kBlockMaskTileQ - 1) / kBlockMaskTileQ;
  const int64_t nbk = (Nk + kBlockMaskTileK - 1) / kBlockMaskTileK;
  std::vector<uint8_t> mask(size_t(nbq * nbk), 0);
  for (int64_t bi = 0; bi < nbq; ++bi) {
    // Positions of the tile's queries on the key axis (bottom-right alignment).
    const int64_t p0 = bi * kBlockMaskTileQ + Nk - Nq;
    const int64_t p1 = std::min(Nq, (bi + 1) * kBlockMaskTileQ) - 1 + Nk - Nq;
    for (int64_t bj = 0; bj < nbk; ++bj) {
      const int64_t j0 = bj * kBlockMaskTileK, j1 = std::min(Nk, (bj + 1) * kBlockMaskTileK) - 1;
      // Some query position p in [p0, p1] has a wanted key in [j0, j1].
      const bool any = causal ? overlap(p0 - window, p1, j0, j1)
                              : overlap(p0 - window, p1 + window, j0, j1);
      mask[size_t(bi * nbk + bj)] = any ? 1 : 0;
    }
  }
  return mask;
}

std::vector<uint8_t> global_local_block_mask(int64_t Nq, int64_t Nk, int64_t num_global_tokens,
                                             int64_t window) {
  FG_CHECK(num_global_tokens >= 0, "global_local_block_mask: num_global_tokens=",
           num_global_tokens, " must be >= 0");
  std::vector<uint8_t> mask = sliding_window_block_mask(Nq, Nk, window, false);
  const int64_t nbq = (Nq + kBlockMaskTileQ - 1) / kBlockMaskTileQ;
  const int64_t nbk = (Nk + kBlockMaskTileK - 1) / kBlockMaskTileK;
  for (int64_t bi = 0; bi < nbq; ++bi) {
    const int64_t p0 = bi * kBlockMaskTileQ + Nk - Nq;  // smallest query position in the tile
    for (int64_t bj = 0; bj < nbk; ++bj) {
      const bool global_key = bj * kBlockMaskTileK < num_global_tokens;
      const bool global_query = p0 < num_global_tokens;
      if (global_key || global_query) mask[size_t(bi * nbk + bj)] = 1;
    }
  }
  return mask;
}

}  // namespace fg
