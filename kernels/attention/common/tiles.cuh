// Tile loaders and the key-tile stream of the tensor-core attention kernels (sm80/, sm90/).
//
// Shared-memory tiles of 16-bit elements are [rows][tile_dim(D)] (common/launch.h: D, or 128 for
// D = 96) with 16-byte chunks XOR-swizzled within
// a row: logical chunk c of row r is stored at chunk c ^ (r % 8), so that ldmatrix reads are
// conflict-free. With the tile 1024-byte aligned, the address of chunk (c0 + 2k) of a fixed row
// is (address of chunk c0) ^ (32 k) when c0 is 0 or 1, which is how the fragment loads step
// along the head dim with one XOR each.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/ptx.cuh"
#include "kernels/attention/common/wgmma.cuh"
#include "kernels/attention/params.h"

namespace fg {
namespace attn {

// cp.async rows [r0, r0 + kRows) of one head of a [*, N, H, D] tensor (row stride seq_stride
// elements) into the swizzled tile at shared address `tile` (1024-byte aligned); rows at or past
// n are zero-filled, so that masked-out columns never multiply garbage. Thread x always moves
// chunk x % (W/8) of rows x / (W/8) + k * kRowStep (W = tile_dim(D); the threads of chunks at
// or past D/8 move nothing), so its swizzled column is fixed and, when kRowStep is a multiple
// of 8, the k-th destination is a compile-time offset (at D = 256 with 128 threads, kRowStep is
// 4 and the swizzle is recomputed per row). kBlocked stores the tile as D/64 column blocks of
// [kRows][64] one after the other (128-byte rows, chunk c of a block's row r at c ^ (r % 8)):
// the layout wgmma's 128-byte swizzle reads. At D = 64 both layouts are the same.
template <int D, int kRows, int kThreads, bool kBlocked = false>
FG_ATTN_DEV void load_tile_async(uint32_t tile, const uint16_t* src, int64_t seq_stride,
                                 int64_t r0, int64_t n) {
  constexpr int W = tile_dim(D);
  constexpr int kChunksPerRow = W / 8;
  constexpr int kRowStep = kThreads / kChunksPerRow;
  constexpr int kPitch = kBlocked ? 128 : W * 2;  // bytes between rows in shared memory
  static_assert(kThreads % kChunksPerRow == 0 && kRows % kRowStep == 0 &&
                    (kRowStep % 8 == 0 || 8 % kRowStep == 0),
                "tile load must divide evenly over the threads");
  static_assert(!kBlocked || D % 64 == 0, "blocked tiles are made of 64-column blocks");
  const int c = int(threadIdx.x) % kChunksPerRow, r = int(threadIdx.x) / kChunksPerRow;
  if (W != D && c >= D / 8) return;  // a padding chunk (D = 96)
  auto dst = [&](int row) {
    return kBlocked
               ? tile + uint32_t((c >> 3) * kRows * 128 + row * 128 + (((c & 7) ^ (row & 7)) << 4))
               : tile + uint32_t(row * kPitch + ((c ^ (row & 7)) << 4));
  };
  const uint32_t dst0 = dst(r);
  const uint16_t* g = src + (r0 + r) * seq_stride + c * 8;
#pragma unroll
  for (int it = 0; it < kRows / kRowStep; ++it) {
    const bool valid = r0 + r + it * kRowStep < n;
    const uint32_t to =
        kRowStep % 8 == 0 ? dst0 + uint32_t(it * kRowStep * kPitch) : dst(r + it * kRowStep);
    cp_async_16(to, valid ? g + it * kRowStep * seq_stride : src, valid ? 16 : 0);
  }
}

// The fp32 form (3xTF32 forward): rows padded to D + 4 floats at shared address `tile`, so that
// the fragment loads (plain 32-bit loads: ldmatrix moves 16-bit elements) hit 32 different
// banks; rows at or past n are zero-filled.
template <int D, int kRows, int kThreads>
FG_ATTN_DEV void load_tile_f32_async(uint32_t tile, const float* src, int64_t seq_stride,
                                     int64_t r0, int64_t n) {
  constexpr int kChunks = D / 4, kRowStep = kThreads / kChunks;
  static_assert(kThreads % kChunks == 0 && kRows % kRowStep == 0, "tile load must divide evenly");
  const int c = int(threadIdx.x) % kChunks, r = int(threadIdx.x) / kChunks;
  const uint32_t dst = tile + uint32_t((r * (D + 4) + c * 4) * 4);
  const float* gp = src + (r0 + r) * seq_stride + c * 4;
#pragma unroll
  for (int it = 0; it < kRows / kRowStep; ++it) {
    const bool valid = r0 + r + it * kRowStep < n;
    cp_async_16(dst + uint32_t(it * kRowStep * (D + 4) * 4),
                valid ? gp + it * kRowStep * seq_stride : src, valid ? 16 : 0);
  }
}

// The work of a block that owns a query tile (the forwards and the deterministic dQ kernel):
// query tile [q0, q1) (blockIdx.x counted from the end, so that the heaviest causal tiles start
// first), query head h, batch b, kv head hk, and the key tiles of kBN keys up to the causal
// end, [0, nkt); ph = b Hq + h, the head's word of the dropout counter.
template <int kBM, int kBN> struct QueryTile {
  int64_t q0, q1, h, b, hk, nkt;
  uint32_t ph;
  FG_ATTN_DEV explicit QueryTile(const AttentionParams& p)
      : QueryTile(p, int64_t(blockIdx.x), int64_t(blockIdx.y), int64_t(blockIdx.z)) {}
  // Query tile `from_end` counted from the last one, query head h_, batch b_ (the persistent
  // kernels walk a list of such tiles).
  FG_ATTN_DEV QueryTile(const AttentionParams& p, int64_t from_end, int64_t h_, int64_t b_) {
    const int64_t nqt = (p.Nq + kBM - 1) / kBM;
    q0 = (nqt - 1 - from_end) * kBM;
    q1 = q0 + kBM < p.Nq ? q0 + kBM : p.Nq;
    h = h_, b = b_;
    hk = h / (p.Hq / p.Hkv);
    nkt = (key_end(p, q1) + kBN - 1) / kBN;
    ph = uint32_t(p.batch_index_base + b) * uint32_t(p.Hq) + uint32_t(h);
  }

  // The first key tile at or after kt that causal and block masks leave visible to some row
  // of the query tile (nkt if none): the others are never loaded.
  FG_ATTN_DEV int64_t next_visible(const AttentionParams& p, int64_t kt) const {
    while (kt < nkt) {
      const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
      if (tile_visibility(p, h, q0, q1, k0, k1) != TileVisibility::empty) break;
      ++kt;
    }
    return kt;
  }

  // The visible key tiles, streamed through two shared-memory stages with cp.async: the load
  // of the next tile overlaps the math on the current one, one __syncthreads per tile.
  // load_kv(kt, stage) issues the cp.async of key tile kt into `stage`; body(k0, k1, stage)
  // computes on keys [k0, k1) in `stage`. kAsyncProxy: the tiles are read by wgmma (async
  // proxy), so each thread fences after its copies land and before the barrier.
  //   first_key_tile() loads the first tile into stage 0 (before the caller sets up its
  //   accumulators, so the copy is in flight meanwhile) and returns its index;
  //   for_each_key_tile(kt, ...) runs the pipeline from there.
  template <typename LoadKV>
  FG_ATTN_DEV int64_t first_key_tile(const AttentionParams& p, LoadKV load_kv) const {
    const int64_t kt = next_visible(p, 0);
    if (kt < nkt) load_kv(kt, 0);
    cp_async_commit();
    return kt;
  }
  template <bool kAsyncProxy, typename LoadKV, typename Body>
  FG_ATTN_DEV void for_each_key_tile(const AttentionParams& p, int64_t kt, LoadKV load_kv,
                                     Body body) const {
    int stage = 0;
    while (kt < nkt) {
      cp_async_wait_all();
      if constexpr (kAsyncProxy) fence_proxy_async();
      __syncthreads();  // tile kt is in; every warp is done with the other stage
      const int64_t kt_next = next_visible(p, kt + 1);
      if (kt_next < nkt) load_kv(kt_next, stage ^ 1);
      cp_async_commit();
      const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
      body(k0, k1, stage);
      stage ^= 1;
      kt = kt_next;
    }
    cp_async_wait_all();  // nothing may be in flight when the block exits
  }
};

// The K and V of a block that owns a query tile, streamed through two shared-memory stages at
// sK and sV: E = uint16_t (swizzled 16-bit tiles, load_tile_async) or float (the padded fp32
// tiles of the 3xTF32 forward, load_tile_f32_async).
template <int D, int kBM, int kBN, int kThreads, typename E>
struct KeyValueStream : QueryTile<kBM, kBN> {
  static constexpr bool kF32 = std::is_same_v<E, float>;
  static constexpr uint32_t kStageBytes =
      kF32 ? uint32_t(kBN * (D + 4) * 4) : uint32_t(kBN * tile_dim(D) * 2);
  const E* k;
  const E* v;
  uint32_t sK, sV;
  FG_ATTN_DEV KeyValueStream(const AttentionParams& p, uint32_t sK_, uint32_t sV_)
      : QueryTile<kBM, kBN>(p),
        k(p.k_head<const E>(this->b, this->hk)),
        v(p.v_head<const E>(this->b, this->hk)),
        sK(sK_),
        sV(sV_) {}

  // cp.async of key tile kt of K and V into `stage`.
  FG_ATTN_DEV void load(const AttentionParams& p, int64_t kt, int stage) const {
    if constexpr (kF32) {
      load_tile_f32_async<D, kBN, kThreads>(sK + stage * kStageBytes, k, p.k_seq_stride, kt * kBN,
                                            p.Nk);
      load_tile_f32_async<D, kBN, kThreads>(sV + stage * kStageBytes, v, p.v_seq_stride, kt * kBN,
                                            p.Nk);
    } else {
      load_tile_async<D, kBN, kThreads>(sK + stage * kStageBytes, k, p.k_seq_stride, kt * kBN,
                                        p.Nk);
      load_tile_async<D, kBN, kThreads>(sV + stage * kStageBytes, v, p.v_seq_stride, kt * kBN,
                                        p.Nk);
    }
  }
  // Issues load_q() (the block's query-side tiles) as one cp.async group and the first visible
  // K/V tile as the next; returns that tile's index for for_each_key_tile.
  template <typename LoadQ>
  FG_ATTN_DEV int64_t start(const AttentionParams& p, LoadQ load_q) const {
    load_q();
    cp_async_commit();
    return this->first_key_tile(p, [&](int64_t kt, int stage) { load(p, kt, stage); });
  }
  template <bool kAsyncProxy, typename Body>
  FG_ATTN_DEV void for_each_key_tile(const AttentionParams& p, int64_t kt, Body body) const {
    QueryTile<kBM, kBN>::template for_each_key_tile<kAsyncProxy>(
        p, kt, [&](int64_t kt_, int stage) { load(p, kt_, stage); }, body);
  }
};

}  // namespace attn
}  // namespace fg
