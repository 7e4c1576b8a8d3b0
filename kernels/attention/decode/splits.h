// How the split-KV decode kernel (decode/forward.cuh) divides a call: host-side arithmetic
// shared by the launcher and by flash_attention_forward_workspace_bytes (dispatch.cu), so that
// the workspace the caller allocates always matches the split the kernel makes.
//
// A decode call has few query rows (one new token per sequence, times the query heads of a GQA
// group) against a long key cache. One thread block per (batch, kv head) would leave most of
// the GPU idle at batch 1, so the keys are split across blocks as well: each block reads
// keys_per_split consecutive keys once for every query row of its kv head, and the partial
// results are combined with their log-sum-exps: by a second kernel (decode_split), or within
// a thread-block cluster on Hopper (cluster_split).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/env.h"
#include "core/error.h"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {
namespace decode {

constexpr int kThreads = 128;      // four warps per block
constexpr int kRowsPerBlock = 8;   // query rows one block serves (heads of a group x new tokens)
constexpr int kMaxSplits = 128;    // the workspace grows with this
constexpr int64_t kMinKeysPerSplit = 64;

struct Split {
  int64_t row_chunks = 1;      // blocks over the query rows of one kv head
  int64_t splits = 1;          // blocks over the keys
  int64_t keys_per_split = 0;  // keys per block (the last one may hold fewer)
};

// The query rows a kv head serves: every new token of every query head in its group.
FG_HD int64_t decode_rows(const AttentionParams& p) { return p.Nq * (p.Hq / p.Hkv); }

// The blocks over query rows alone: s.row_chunks per kv head, and the count of (batch, kv head,
// row chunk) blocks returned; 0 for a call the kernels do not run (the argument check refuses
// it): no split, no keys.
inline int64_t row_blocks(const AttentionParams& p, Split& s) {
  if (p.B <= 0 || p.Nq <= 0 || p.Nk <= 0 || p.Hq <= 0 || p.Hkv <= 0 || p.Hq % p.Hkv != 0)
    return 0;
  s.row_chunks = (decode_rows(p) + kRowsPerBlock - 1) / kRowsPerBlock;
  return p.B * p.Hkv * s.row_chunks;
}

// The keys of `splits` blocks: an equal share each, rounded up to a multiple of `unit`, and the
// splits counted again so that no block at the end is empty (the last holds what is left).
inline void share_keys(const AttentionParams& p, Split& s, int64_t splits, int64_t unit) {
  const int64_t share = (p.Nk + splits - 1) / splits;
  s.keys_per_split = (share + unit - 1) / unit * unit;
  s.splits = (p.Nk + s.keys_per_split - 1) / s.keys_per_split;
}

// Both kernels' grids: (splits, Hkv x row chunks, B).
inline void check_decode_grid(const AttentionParams& p, const Split& s) {
  FG_CHECK(p.B <= 65535 && p.Hkv * s.row_chunks <= 65535, "flash_attention_forward_cuda: B=",
           p.B, " and Hkv=", p.Hkv, " are too large for the decode kernel's grid");
}

// FLASHGRAD_DECODE_BLOCKS_PER_SM (1 to 32; read once) fixes the blocks per SM the split aims
// at, for experiments; 0 when unset, and decode_split chooses.
inline int64_t decode_blocks_per_sm_override() {
  static const int64_t n = env_int("FLASHGRAD_DECODE_BLOCKS_PER_SM", 0, 1, 32);
  return n;
}

// Splits past this many are not worth more blocks (see decode_split).
constexpr int64_t kMaxEagerSplits = 32;

// Enough blocks to fill the GPU several times over, at most kMaxSplits, each holding at least
// kMinKeysPerSplit keys; no split at all (one block per kv head and row chunk) when the batch
// alone fills the GPU or there is no workspace to combine the parts in.
//
// How many times over: more blocks keep more loads in flight, but every split is one more part
// that combine_kernel merges, one after another, for each row. On an H100 (2026-12-07, bench
// decode-attention, 8k and 32k keys) 8 blocks per SM took about 7% less time than 4 at batch 8
// with 8 kv heads (17 splits instead of 9), and 33-54% more at batch 1 with 12 heads (88 splits
// instead of 44; 6, 12 and 16 per SM were no better). So: 8 per SM when 4 already split the
// keys and 8 make at most kMaxEagerSplits splits; else 4.
inline Split decode_split(const AttentionParams& p, int sm_count, bool have_workspace) {
  Split s;
  const int64_t blocks = row_blocks(p, s);
  if (blocks == 0) return s;
  const int64_t most = (p.Nk + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
  auto splits_at = [&](int64_t per_sm) {
    const int64_t want = (per_sm * int64_t(sm_count) + blocks - 1) / blocks;
    return have_workspace ? std::max<int64_t>(1, std::min({want, most, int64_t(kMaxSplits)})) : 1;
  };
  const int64_t forced = decode_blocks_per_sm_override();
  int64_t splits;
  if (forced > 0) {
    splits = splits_at(forced);
  } else {
    const int64_t four = splits_at(4), eight = splits_at(8);
    splits = four > 1 && eight <= kMaxEagerSplits ? eight : four;
  }
  share_keys(p, s, splits, 1);
  return s;
}

// The one-launch form (cluster.cuh, Hopper): the splits of a (batch, kv head, row chunk) are
// one thread-block cluster, at most max_cluster (8, or 16 where the device grants it) blocks.
// Keys arrive in stages of kStageKeys.
constexpr int kStageKeys = 64;

// As many splits as fill the GPU once (blocks_per_sm resident blocks on each SM, from the
// kernel's occupancy), at most max_cluster, and at least two stages of keys per block; each
// block's share rounded up to whole stages (the last block takes what is left, so no block is
// empty). With FLASHGRAD_DECODE_BLOCKS_PER_SM set, that many blocks per SM instead.
inline Split cluster_split(const AttentionParams& p, int sm_count, int blocks_per_sm,
                           int max_cluster) {
  Split s;
  const int64_t blocks = row_blocks(p, s);
  if (blocks == 0) return s;
  const int64_t forced = decode_blocks_per_sm_override();
  const int64_t resident = int64_t(sm_count) * (forced > 0 ? forced : std::max(1, blocks_per_sm));
  const int64_t fit = std::max<int64_t>(1, resident / blocks);
  const int64_t most = std::max<int64_t>(1, p.Nk / (2 * kStageKeys));
  share_keys(p, s, std::min({fit, most, int64_t(std::max(1, max_cluster))}), kStageKeys);
  return s;
}

// Workspace: the partial outputs [splits, B, Hq, Nq, D] and their log2-sum-exps
// [splits, B, Hq, Nq], fp32; nothing when the call is not split.
inline size_t decode_workspace_bytes(const AttentionParams& p, const Split& s) {
  if (s.splits <= 1) return 0;
  const size_t rows = size_t(s.splits * p.B * p.Hq * p.Nq);
  return attention_workspace_pad(rows * size_t(p.D) * 4) + attention_workspace_pad(rows * 4);
}

}  // namespace decode
}  // namespace attn
}  // namespace fg
