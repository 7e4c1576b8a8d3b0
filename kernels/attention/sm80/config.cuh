// The tile configuration of the mma.sync kernels (sm80/), also used by the wgmma backward
// (sm90/backward.cuh), and their shared-memory sizes. A warp's rows and a key tile lie inside
// one 64 x 64 block-mask tile (the kernels static_assert it), so a masked-out block-mask entry
// skips that work whole.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/attention/common/launch.h"

namespace fg {
namespace attn {
namespace sm80 {

template <int D> struct Config {
  // 16-bit forward (D 64, 96, 128, 256): kFwdWarps warps of kFwdMT m16 row tiles (kFwdBM query
  // rows per block), key tiles of kFwdBN; at D = 256 one row tile a warp, so that the output
  // accumulators (kFwdMT * D / 2 floats a thread) stay in registers, and 32-key tiles, so that
  // shared memory (97 KB) fits two blocks an SM on Hopper and the 99 KB opt-in limit of
  // sm_86/89/120 (64-key tiles took 161 KB and spilled 56 bytes). Shared memory: Q, 2 stages of
  // K and V, rows tile_dim(D) wide, and 1 KB of slack to align the base to 1024 bytes (the
  // swizzle needs aligned tiles).
  static constexpr int kFwdWarps = 4, kFwdMT = D > 128 ? 1 : 2, kFwdBN = D > 128 ? 32 : 64;
  static constexpr int kFwdBM = kFwdWarps * kFwdMT * 16;
  static constexpr size_t kFwdSmem =
      2 * size_t(kFwdBM * tile_dim(D) + 2 * 2 * kFwdBN * tile_dim(D)) + 1024;

  // fp32 forward (3xTF32): one m16 row tile per warp; D = 128 takes 32-key tiles so that two
  // blocks fit on an SM. Shared memory: Q, 2 stages of K and V, rows padded to D + 4 floats.
  static constexpr int kTf32Warps = 4, kTf32BN = D == 64 ? 64 : 32;
  static constexpr int kTf32BM = kTf32Warps * 16;
  static constexpr size_t kTf32Smem = 4 * size_t((kTf32BM + 2 * 2 * kTf32BN) * (D + 4));

  // Backward dK/dV: kBwdWarps warps, each owning 16 keys and D / kBwdDSplit dims of their dK
  // and dV (kBwdBN keys per block), query tiles of kBwdBM rows. A warp's dK and dV take
  // D / kBwdDSplit floats a thread, so at D = 256 two warps share 16 keys, each with
  // half the head dim (both form the same S^T and dP^T; 64 keys a block). At D = 64 each warp
  // keeps its K and V fragments in registers for the whole loop (wider heads reload them from
  // shared memory). Shared memory: K, V; two stages of Q, dO and dS^T; two stages of LSE and
  // D_i (fp32); 1 KB alignment slack (210 KB at D = 256: Hopper only).
  static constexpr int kBwdWarps = 8, kBwdBM = 64, kBwdDSplit = D > 128 ? 2 : 1;
  static constexpr int kBwdBN = kBwdWarps / kBwdDSplit * 16;
  static constexpr bool kKeepKV = D == 64;
  static constexpr size_t kBwdSmem =
      2 * size_t(2 * kBwdBN * tile_dim(D) + 2 * 2 * kBwdBM * tile_dim(D) + 2 * kBwdBN * kBwdBM) +
      4 * size_t(2 * 2 * kBwdBM) + 1024;

  // Deterministic dQ kernel: as the forward, one m16 row tile per warp. Shared memory: Q, dO,
  // 2 stages of K and V, 1 KB alignment slack.
  static constexpr int kDqWarps = 4, kDqBN = 64;
  static constexpr int kDqBM = kDqWarps * 16;
  static constexpr size_t kDqSmem =
      2 * size_t(2 * kDqBM * tile_dim(D) + 2 * 2 * kDqBN * tile_dim(D)) + 1024;
};

}  // namespace sm80
}  // namespace attn
}  // namespace fg
