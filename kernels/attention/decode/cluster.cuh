// Split-KV decode attention in one launch, for Hopper: the splits of one (batch, kv head, row
// chunk) form a thread-block cluster, and merge their parts through distributed shared memory
// instead of a workspace and a second kernel.
//
// Grid (split, kv head x row chunk, batch), cluster (splits, 1, 1). Block s of a cluster takes
// keys_per_split consecutive keys of its kv head and serves every query row of the head's GQA
// group with them (up to kRowsPerBlock rows), as split_kernel does (forward.cuh: lane groups,
// log2-domain online softmax, the same masking). What differs is how the keys arrive: the
// block copies them stage by stage (kStageKeys keys of K and of V) into a ring of shared
// memory with cp.async, Pipe::kStages - 1 stages ahead of the one it scores, so each block
// keeps 24-64 KB of loads in flight without holding them in registers. After the last stage
// the lane groups merge in shared memory into the block's part (normalised output and
// log2-sum-exp per row); the cluster syncs, each block merges a slice of the rows' outputs
// from every block's part (LSE = log2 sum_s 2^lse_s, O = sum_s 2^(lse_s - LSE) O_s), and
// syncs again so that no block leaves while another reads its shared memory.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "kernels/attention/common/launch.h"
#include "kernels/attention/common/numeric.cuh"
#include "kernels/attention/common/ptx.cuh"
#include "kernels/attention/decode/common.cuh"
#include "kernels/attention/decode/splits.h"

namespace fg {
namespace attn {
namespace decode {

// The ring of stages: K rows then V rows of kStageKeys keys each, densely packed.
template <typename T, int D> struct Pipe {
  static constexpr int kRowBytes = D * int(sizeof(T));
  static constexpr int kPieces = kRowBytes / 16;  // 16-byte copies per row
  static constexpr int kStageBytes = 2 * kStageKeys * kRowBytes;
  // 8-16 KB stages four deep, 32 KB three deep, 64 KB (fp32 at D 128, bf16/f16 at 256) two deep.
  static constexpr int kStages = kStageBytes <= 16384 ? 4 : kStageBytes <= 32768 ? 3 : 2;
  static constexpr int kSmem = kStages * kStageBytes;
  static constexpr int kCopies = 2 * kStageKeys * kPieces / kThreads;  // per thread and stage
  static_assert(2 * kStageKeys * kPieces % kThreads == 0, "whole copies per thread");
};

template <typename T, int D, int ROWS>
__global__ void __launch_bounds__(kThreads)
    cluster_kernel(const AttentionParams p, const Split split) {
  using S = Shape<T, D>;
  using P = Pipe<T, D>;
  constexpr int V = S::kVec, G = S::kGroups, KS = kStageKeys;
  constexpr int NS = P::kStages;
  constexpr int U = KS / G < 4 ? KS / G : 4;  // keys per lane group and softmax update
  static_assert(KS % (G * U) == 0, "whole updates per stage");
  static_assert(G * ROWS * D * 4 <= P::kSmem, "the lane groups' merge reuses the ring");
  extern __shared__ __align__(16) unsigned char smem[];
  T* ring = reinterpret_cast<T*>(smem);
  __shared__ float s_m[G][ROWS], s_l[G][ROWS];
  __shared__ __align__(16) float s_o[ROWS][D];  // this block's part, read by the whole cluster
  __shared__ float s_lse[ROWS];

  const int64_t hk = blockIdx.y / split.row_chunks, chunk = blockIdx.y % split.row_chunks;
  const int64_t b = blockIdx.z, s = blockIdx.x;
  const int64_t rows = decode_rows(p), row0 = chunk * ROWS;
  const int64_t k_begin = s * split.keys_per_split;
  // Keys from here on are counted from k_begin, in 32 bits (a block holds keys_per_split).
  const int64_t k_end =
      min64(Lanes<T, D, ROWS>::key_end(p, b, hk, row0), k_begin + split.keys_per_split);
  const int n_keys = k_end > k_begin ? int(k_end - k_begin) : 0;
  const int stages = (n_keys + KS - 1) / KS;

  // Stage t into its slot of the ring; keys past k_end are zero-filled (not read). Every
  // thread commits one group per call, empty or not, so that the wait below counts stages.
  const T* kbase = p.k_head<const T>(b, hk) + k_begin * p.k_seq_stride;
  const T* vbase = p.v_head<const T>(b, hk) + k_begin * p.v_seq_stride;
  auto issue = [&](int t) {
    if (t < stages) {
      const int j0 = t * KS;
      T* dst = ring + (t % NS) * 2 * KS * D;
#pragma unroll
      for (int i = 0; i < P::kCopies; ++i) {
        const int c = int(threadIdx.x) + i * kThreads;
        const int kv = c / (KS * P::kPieces), key = (c / P::kPieces) % KS, piece = c % P::kPieces;
        const bool in = j0 + key < n_keys;
        const int64_t j = in ? j0 + key : j0;
        const T* src = kv ? vbase + j * p.v_seq_stride : kbase + j * p.k_seq_stride;
        cp_async_16(smem_u32(dst + (kv * KS + key) * D + piece * V), src + piece * V, in ? 16 : 0);
      }
    }
    cp_async_commit();
  };

#pragma unroll
  for (int t = 0; t < NS - 1; ++t) issue(t);
  // The query rows load while the first stages are in flight (the lanes' constructor waits for
  // them): one memory round trip at the start instead of two.
  Lanes<T, D, ROWS> ln(p, b, hk, row0);
  int last_rel[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) last_rel[r] = int(max64(-1, min64(ln.last[r] - k_begin, n_keys)));
  for (int t = 0; t < stages; ++t) {
    cp_async_wait<NS - 2>();  // stage t has landed (for this thread's copies) ...
    __syncthreads();          // ... and for everyone's; slot (t - 1) % NS is free again
    issue(t + NS - 1);
    const T* sk = ring + (t % NS) * 2 * KS * D + ln.sub * V;
    const T* sv = sk + KS * D;
#pragma unroll
    for (int u0 = 0; u0 < KS / G; u0 += U) {
      // Keys group + (u0 + u) G of the stage: a warp's lane groups read consecutive rows.
      uint4 kw[U], vw[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        kw[u] = *reinterpret_cast<const uint4*>(sk + (ln.group + (u0 + u) * G) * D);
        vw[u] = *reinterpret_cast<const uint4*>(sv + (ln.group + (u0 + u) * G) * D);
      }
      float x[U][ROWS];
      ln.score(kw, x);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int j = t * KS + ln.group + (u0 + u) * G;
#pragma unroll
        for (int r = 0; r < ROWS; ++r)
          if (j > last_rel[r] || j >= n_keys) x[u][r] = neg_inf<float>();
      }
      ln.update(x, vw);
    }
  }
  cp_async_wait_all();
  __syncthreads();  // the ring is free: the lane groups merge in it

  // The block's part: straight to O and LSE when unsplit, else to shared memory for the
  // cluster's merge.
  ln.merge(s_m, s_l, reinterpret_cast<float*>(smem), rows - row0,
           [&](int r, int d, float o, float lse2) {
             if (split.splits == 1) {
               const Row row = row_of(p, hk, row0 + r);
               store_acc(p.o_head<T>(b, row.h) + row.qi * p.o_seq_stride + d, o);
               if (d == 0) p.lse_row<float>(b, row.h)[row.qi] = lse2 / kLog2e;
             } else {
               s_o[r][d] = o;
               if (d == 0) s_lse[r] = lse2;
             }
           });
  if (split.splits == 1) return;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();  // every block's part is in its shared memory
  const int parts = int(split.splits), rank = int(cluster.block_rank());
  for (int idx = rank * kThreads + int(threadIdx.x); idx < ROWS * D; idx += parts * kThreads) {
    const int r = idx / D, d = idx % D;
    if (row0 + r >= rows) break;
    float o, lse;
    merge_parts(
        parts, [&](int64_t c) { return cluster.map_shared_rank(&s_lse[0], int(c))[r]; },
        [&](int64_t c) { return cluster.map_shared_rank(&s_o[0][0], int(c))[r * D + d]; }, o, lse);
    const Row row = row_of(p, hk, row0 + r);
    store_acc(p.o_head<T>(b, row.h) + row.qi * p.o_seq_stride + d, o);
    if (d == 0) p.lse_row<float>(b, row.h)[row.qi] = lse;
  }
  cluster.sync();  // no block leaves while another still reads its part
#else
  __trap();  // (use_cluster_kernel() keeps this kernel off devices without clusters)
#endif
}

// What the hardware allows this kernel on the current device: whether it can run at all (its
// code compiled for sm_90 or later, its shared memory within the device's opt-in limit, at
// least one block an SM), blocks per SM at its shared memory, and the largest cluster (16 where
// the non-portable size is granted, else 8). The attributes are set here, once per device.
struct ClusterLimits {
  bool usable = false;
  int blocks_per_sm = 0, max_cluster = 1;
};
template <typename T, int D, int ROWS> const ClusterLimits& cluster_limits() {
  static std::mutex mu;
  static std::map<int, ClusterLimits> by_device;
  const int device = cuda_current_device();
  std::lock_guard<std::mutex> lock(mu);
  auto it = by_device.find(device);
  if (it != by_device.end()) return it->second;
  auto kernel = cluster_kernel<T, D, ROWS>;
  using P = Pipe<T, D>;
  ClusterLimits lim;
  cudaFuncAttributes attr{};
  FG_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  const CudaDeviceInfo& info = cuda_current_device_info();
  if (attr.ptxVersion >= 90 && info.major >= 9 &&
      attr.sharedSizeBytes + size_t(P::kSmem) <= info.shared_memory_optin) {
    FG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       P::kSmem));
    FG_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&lim.blocks_per_sm, kernel,
                                                                kThreads, P::kSmem));
    FG_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(16, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = P::kSmem;
    int most = 0;
    FG_CUDA_CHECK(cudaOccupancyMaxPotentialClusterSize(&most, kernel, &cfg));
    lim.max_cluster = std::max(1, std::min(most, 16));
    lim.usable = lim.blocks_per_sm > 0;
  }
  return by_device.emplace(device, lim).first->second;
}

template <typename T, int D, int ROWS>
void launch_cluster(const AttentionParams& p, const Split& sp, cudaStream_t stream) {
  auto kernel = cluster_kernel<T, D, ROWS>;  // (its attributes: cluster_limits)
  using P = Pipe<T, D>;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(sp.splits), unsigned(p.Hkv * sp.row_chunks), unsigned(p.B));
  cfg.blockDim = dim3(kThreads, 1, 1);
  cfg.dynamicSmemBytes = P::kSmem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(sp.splits);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = sp.splits > 1 ? 1 : 0;
  FG_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, p, sp));
}

template <typename T, int D, int ROWS>
bool run_cluster_rows(const AttentionParams& p, cudaStream_t stream) {
  const ClusterLimits& lim = cluster_limits<T, D, ROWS>();
  if (!lim.usable) return false;
  const Split sp = cluster_split(p, cuda_current_device_info().sm_count, lim.blocks_per_sm,
                                 lim.max_cluster);
  check_decode_grid(p, sp);
  FG_CHECK(sp.keys_per_split <= (int64_t(1) << 30), "flash_attention_forward_cuda: a decode "
           "block would take ", sp.keys_per_split, " keys, more than it counts in 32 bits (2^30)");
  launch_cluster<T, D, ROWS>(p, sp, stream);
  return true;
}

}  // namespace decode
}  // namespace attn
}  // namespace fg
