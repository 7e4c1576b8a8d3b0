// Split-KV decode attention and its launcher decode::run_forward<T, D>: a few query rows (the
// new token of each sequence, or a few) against a long key/value cache, memory-bound.
//
// Grid (split, kv head x row chunk, batch). A block takes keys_per_split consecutive keys of
// one kv head and serves every query row of that head's GQA group with them (up to
// kRowsPerBlock rows: Nq new tokens x Hq/Hkv query heads), so each key and value is read from
// memory once for the whole group. Within a block, D / kVec lanes share one key (each holds
// 16 bytes of it, of K and of V), and the block walks its keys kGroups at a time, four keys per
// lane group in flight. Each lane group keeps its own online softmax (running max m, sum l and
// output slice, in the log2 domain: the queries are pre-scaled by softmax_scale * log2 e); at
// the end the groups are merged through shared memory. An unsplit call writes O and LSE
// directly; a split one writes each part's normalised output and log2-sum-exp to the
// workspace, and combine_kernel merges the parts: LSE = log2 sum_s 2^lse_s,
// O = sum_s 2^(lse_s - LSE) O_s.
//
// Masking: causal (bottom right: row i of Nq sees keys j <= i + Nk - Nq); no block mask and no
// dropout (dispatch.cu sends those calls elsewhere). With per-entry lengths (seqused_k), entry b
// uses its own length for Nk; the split still follows the capacity Nk, and the blocks past an
// entry's length find no key and leave an empty part (log2-sum-exp -inf) for the combine. A
// row that sees no key gets O = 0 and LSE = -infinity, as in every path.
//
// On Hopper, calls of one or two rows per kv head take the one-launch form of cluster.cuh
// instead; both kernels share their lane state (common.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/cuda_device.h"
#include "core/env.h"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/numeric.cuh"
#include "kernels/attention/decode/cluster.cuh"
#include "kernels/attention/decode/common.cuh"
#include "kernels/attention/decode/splits.h"

namespace fg {
namespace attn {
namespace decode {

// (A form that loaded the next step's keys and values before scoring this step's took -3% to
// +7% of this one's time on an H100, 2026-12-07, and was removed: bench/RESULTS.md.)
template <typename T, int D, int ROWS>
__global__ void __launch_bounds__(kThreads)
    split_kernel(const AttentionParams p, const Split split, float* part_o, float* part_lse) {
  using S = Shape<T, D>;
  constexpr int V = S::kVec, G = S::kGroups;
  // Keys per lane group and step: all loaded first (in flight together), then scored, then one
  // online-softmax update per row for the whole step. Four keys (eight at one row measured
  // slower: their registers cost occupancy); eight at two rows, which have registers to spare.
  constexpr int U = ROWS == 2 ? 8 : 4;
  __shared__ float s_m[G][ROWS], s_l[G][ROWS];
  __shared__ __align__(16) float s_acc[G * ROWS * D];

  const int64_t hk = blockIdx.y / split.row_chunks, chunk = blockIdx.y % split.row_chunks;
  const int64_t b = blockIdx.z, s = blockIdx.x;
  const int64_t row0 = chunk * ROWS;
  Lanes<T, D, ROWS> ln(p, b, hk, row0);
  const int64_t k_begin = s * split.keys_per_split;
  const int64_t k_end = min64(ln.k_end, k_begin + split.keys_per_split);

  const T* kp = p.k_head<const T>(b, hk) + ln.sub * V;
  const T* vp = p.v_head<const T>(b, hk) + ln.sub * V;
  for (int64_t j0 = k_begin + ln.group; j0 < k_end; j0 += int64_t(G) * U) {
    uint4 kw[U], vw[U];  // all loads first: U keys per lane in flight, zeros past k_end
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t j = j0 + int64_t(u) * G;
      kw[u] = vw[u] = make_uint4(0u, 0u, 0u, 0u);
      if (j < k_end) {
        kw[u] = *reinterpret_cast<const uint4*>(kp + j * p.k_seq_stride);
        vw[u] = *reinterpret_cast<const uint4*>(vp + j * p.v_seq_stride);
      }
    }
    float x[U][ROWS];
    ln.score(kw, x);
    // Masked keys (past the row's causal limit, past the split, or a padding row) score -inf.
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < ROWS; ++r)
        if (j0 + int64_t(u) * G > ln.last[r] || j0 + int64_t(u) * G >= k_end) x[u][r] = neg_inf<float>();
    ln.update(x, vw);
  }

  // The block's part: straight to O and LSE when unsplit, else to the workspace.
  ln.merge(s_m, s_l, s_acc, decode_rows(p) - row0, [&](int r, int d, float o, float lse2) {
    const Row row = row_of(p, hk, row0 + r);
    if (split.splits == 1) {
      store_acc(p.o_head<T>(b, row.h) + row.qi * p.o_seq_stride + d, o);
      if (d == 0) p.lse_row<float>(b, row.h)[row.qi] = lse2 / kLog2e;
    } else {
      const int64_t at = ((s * p.B + b) * p.Hq + row.h) * p.Nq + row.qi;
      part_o[at * D + d] = o;
      if (d == 0) part_lse[at] = lse2;
    }
  });
}

// One block of D threads per (batch, query head, query row): merges the splits' parts.
template <typename T, int D>
__global__ void __launch_bounds__(D)
    combine_kernel(const AttentionParams p, int64_t splits, const float* part_o,
                   const float* part_lse) {
  const int64_t row = blockIdx.x, qi = row % p.Nq, h = (row / p.Nq) % p.Hq, b = row / (p.Nq * p.Hq);
  const int64_t stride = p.B * p.Hq * p.Nq;
  const int d = int(threadIdx.x);
  float o, lse;
  merge_parts(
      splits, [&](int64_t s) { return part_lse[s * stride + row]; },
      [&](int64_t s) { return part_o[(s * stride + row) * D + d]; }, o, lse);
  store_acc(p.o_head<T>(b, h) + qi * p.o_seq_stride + d, o);
  if (d == 0) p.lse_row<float>(b, h)[qi] = lse;
}

template <typename T, int D, int ROWS>
void launch(const AttentionParams& p, const Split& sp, float* part_o, float* part_lse,
            cudaStream_t stream) {
  const dim3 grid(unsigned(sp.splits), unsigned(p.Hkv * sp.row_chunks), unsigned(p.B));
  split_kernel<T, D, ROWS><<<grid, kThreads, 0, stream>>>(p, sp, part_o, part_lse);
  FG_LAUNCH_CHECK();
  if (sp.splits > 1) {
    combine_kernel<T, D><<<unsigned(p.B * p.Hq * p.Nq), D, 0, stream>>>(p, sp.splits, part_o,
                                                                       part_lse);
    FG_LAUNCH_CHECK();
  }
}

// Which form runs: FLASHGRAD_DECODE_KERNEL=cluster or =split forces one (for experiments);
// unset (or auto), the cluster form (cluster.cuh) for one or two query rows per kv head, the
// split + combine pair otherwise. The cluster form needs a build with sm_90a code and a device
// of compute capability 9 (the pair runs everywhere).
inline bool use_cluster_kernel(const AttentionParams& p) {
  static const int forced = env_choice("FLASHGRAD_DECODE_KERNEL", {"auto", "cluster", "split"});
#if defined(FLASHGRAD_HAVE_SM90A)
  if (forced == 2 || cuda_current_device_info().major != 9) return false;
  return forced == 1 || decode_rows(p) <= 2;
#else
  (void)p;
  return false;
#endif
}

// Calls f(std::integral_constant<int, ROWS>{}) with the fewest rows per block, 1, 2, 4 or 8,
// that cover a kv head's group (a block of 8 rows reads as much as one of 1).
template <typename F> decltype(auto) with_rows(const AttentionParams& p, F&& f) {
  const int64_t rows = std::min<int64_t>(decode_rows(p), kRowsPerBlock);
  if (rows <= 1) return f(std::integral_constant<int, 1>{});
  if (rows <= 2) return f(std::integral_constant<int, 2>{});
  if (rows <= 4) return f(std::integral_constant<int, 4>{});
  return f(std::integral_constant<int, 8>{});
}

template <typename T, int D> void run_forward(const AttentionParams& p, cudaStream_t stream) {
  // The cluster form, four warps a block (eight, for one or two rows per kv head, were 2-7%
  // slower on an H100, 2026-12-07: bench/RESULTS.md); it launches nothing where this device
  // cannot run its instance, and the pair runs instead.
  if (use_cluster_kernel(p) &&
      with_rows(p, [&](auto rows) { return run_cluster_rows<T, D, rows>(p, stream); }))
    return;
  const Split sp = decode_split(p, cuda_current_device_info().sm_count, p.split_workspace != nullptr);
  check_decode_grid(p, sp);
  float* part_o = static_cast<float*>(p.split_workspace);
  float* part_lse = nullptr;
  if (sp.splits > 1)
    part_lse = reinterpret_cast<float*>(
        static_cast<unsigned char*>(p.split_workspace) +
        attention_workspace_pad(size_t(sp.splits * p.B * p.Hq * p.Nq) * size_t(D) * 4));
  with_rows(p, [&](auto rows) { launch<T, D, rows>(p, sp, part_o, part_lse, stream); });
}

}  // namespace decode
}  // namespace attn
}  // namespace fg
