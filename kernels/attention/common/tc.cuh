// Building blocks shared by the tensor-core attention kernels (attention_tc_forward.cuh and
// attention_tc_backward.cuh): PTX wrappers for cp.async, ldmatrix and mma.sync m16n8k16, 16-bit
// packing, exp2, and the cp.async loader of XOR-swizzled shared-memory tiles.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4), which every kernel relies on:
//   A 16x16 (row):  a0 (row g, cols 2t, 2t+1), a1 (row g+8, same), a2 (row g, cols 8+2t, +1),
//                   a3 (row g+8, cols 8+2t, +1)
//   B 16x8  (col):  b0 (k rows 2t, 2t+1, col g), b1 (k rows 8+2t, +1, col g)
//   C 16x8:         c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, cols 2t, 2t+1)
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; register i then holds
// (row g, cols 2t, 2t+1) of matrix i, or with .trans (rows 2t, 2t+1, col g).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention/params.h"
#include "core/half.h"
#include "core/philox.h"

namespace fg {
namespace attn {
namespace tc {

#define FG_TC_DEV __device__ __forceinline__

// ---------------------------------------------------------------------------------------------
// PTX wrappers

FG_TC_DEV uint32_t smem_u32(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 zero-fills the destination (rows
// past the end of the sequence), without reading src.
FG_TC_DEV void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
FG_TC_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
FG_TC_DEV void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

FG_TC_DEV void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
FG_TC_DEV void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// D (16x8 f32) += A (16x16, row) * B (16x8, col).
template <typename T>
FG_TC_DEV void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats -> one 32-bit register of two 16-bit values, `lo` in the low half (the lower
// column, as the mma fragments and memory order want).
template <typename T> FG_TC_DEV uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

FG_TC_DEV float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---------------------------------------------------------------------------------------------
// Shared-memory tiles: [rows][D] 16-bit elements, 16-byte chunks XOR-swizzled within a row:
// logical chunk c of row r is stored at chunk c ^ (r % 8). With the tile 1024-byte aligned, the
// address of chunk (c0 + 2k) of a fixed row is (address of chunk c0) ^ (32 k) when c0 is 0 or 1,
// which is how the fragment loads below step along the head dim with one XOR each.


// cp.async rows [r0, r0 + kRows) of one head of a [*, N, H, D] tensor (row stride seq_stride
// elements) into the swizzled tile at shared address `tile` (1024-byte aligned); rows at or past
// n are zero-filled. Thread x always moves chunk x % (D/8) of rows x / (D/8) + k * kRowStep,
// so its swizzled column is fixed and the k-th destination is a compile-time offset.
// kBlocked stores the tile as D/64 column blocks of [kRows][64] one after the other (128-byte
// rows, chunk c of a block's row r at c ^ (r % 8)): the layout wgmma's 128-byte swizzle reads.
// At D = 64 both layouts are the same.
template <int D, int kRows, int kThreads, bool kBlocked = false>
FG_TC_DEV void load_tile_async(uint32_t tile, const uint16_t* src, int64_t seq_stride,
                               int64_t r0, int64_t n) {
  constexpr int kChunksPerRow = D / 8;
  constexpr int kRowStep = kThreads / kChunksPerRow;
  constexpr int kPitch = kBlocked ? 128 : D * 2;  // bytes between rows in shared memory
  static_assert(kThreads % kChunksPerRow == 0 && kRowStep % 8 == 0 && kRows % kRowStep == 0,
                "tile load must divide evenly over the threads");
  static_assert(!kBlocked || D % 64 == 0, "blocked tiles are made of 64-column blocks");
  const int c = int(threadIdx.x) % kChunksPerRow, r = int(threadIdx.x) / kChunksPerRow;
  const uint32_t dst =
      kBlocked ? tile + uint32_t((c >> 3) * kRows * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4))
               : tile + uint32_t(r * D * 2 + ((c ^ (r & 7)) << 4));
  const uint16_t* g = src + (r0 + r) * seq_stride + c * 8;
#pragma unroll
  for (int it = 0; it < kRows / kRowStep; ++it) {
    const bool valid = r0 + r + it * kRowStep < n;
    cp_async_16(dst + uint32_t(it * kRowStep * kPitch), valid ? g + it * kRowStep * seq_stride : src,
                valid ? 16 : 0);
  }
}


// A 4-byte global -> shared copy (for per-row fp32 values); src_bytes = 0 zero-fills.
FG_TC_DEV void cp_async_4(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}

FG_TC_DEV void st_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
FG_TC_DEV void st_shared_zero16(uint32_t addr) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0u) : "memory");
}

// fp32 on tensor cores to about fp32 accuracy ("3xTF32"): x = hi + lo with hi = tf32(x) and
// lo = tf32(x - hi), and a product taken as lo*hi + hi*lo + hi*hi (small terms first); the
// dropped lo*lo term and lo's own rounding are near 2^-22 relative, against 2^-11 for plain TF32.
FG_TC_DEV uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
FG_TC_DEV void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - __uint_as_float(hi));
}
// D (16x8 f32) += A (16x8 tf32, row) * B (8x8 tf32, col). Fragments (g = lane / 4, t = lane % 4):
// a0 (row g, col t), a1 (row g+8, col t), a2 (row g, col t+4), a3 (row g+8, col t+4);
// b0 (k row t, col g), b1 (k row t+4, col g); C as for m16n8k16.
FG_TC_DEV void mma_1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
FG_TC_DEV void mma_1688_3xtf32(float (&c)[4], const uint32_t (&ahi)[4], const uint32_t (&alo)[4],
                               uint32_t bhi0, uint32_t bhi1, uint32_t blo0, uint32_t blo1) {
  mma_1688_tf32(c, alo, bhi0, bhi1);
  mma_1688_tf32(c, ahi, blo0, blo1);
  mma_1688_tf32(c, ahi, bhi0, bhi1);
}

// The softmax scale and dropout constants of one call, as every tensor-core kernel uses them.
// Scores stay raw (unscaled): exp(scale (s - m)) = exp2(s sl2 - m sl2) with sl2 = scale log2 e.
struct SoftmaxDropout {
  float sl2;
  bool dropout;
  uint32_t threshold;  // keep iff the Philox word >= threshold
  float keep_scale;    // 1 / (1 - p)
  uint32_t pk0 = 0, pk1 = 0;  // Philox key
  FG_TC_DEV explicit SoftmaxDropout(const AttentionParams& p)
      : sl2(float(p.softmax_scale * 1.4426950408889634)),
        dropout(p.dropout_p > 0.0),
        threshold(dropout_threshold(p.dropout_p)),
        keep_scale(float(1.0 / (1.0 - p.dropout_p))) {
    philox_key(p.seed, p.offset, pk0, pk1);
  }
};

// A forward block's work: query tile [q0, q1) (blockIdx.x counted from the end, so that the
// heaviest causal tiles start first), query head h, batch b, kv head hk, and the key tiles of
// kBN keys up to the causal end, [0, nkt).
template <int kBM, int kBN> struct ForwardTile {
  int64_t q0, q1, h, b, hk, nkt;
  FG_TC_DEV explicit ForwardTile(const AttentionParams& p) {
    const int64_t nqt = (p.Nq + kBM - 1) / kBM;
    q0 = (nqt - 1 - int64_t(blockIdx.x)) * kBM;
    q1 = q0 + kBM < p.Nq ? q0 + kBM : p.Nq;
    h = blockIdx.y, b = blockIdx.z;
    hk = h / (p.Hq / p.Hkv);
    const int64_t kend = p.causal ? (q1 + p.Nk - p.Nq < p.Nk ? q1 + p.Nk - p.Nq : p.Nk) : p.Nk;
    nkt = kend > 0 ? (kend + kBN - 1) / kBN : 0;
  }
};

// The first key tile at or after kt that causal and block masks leave visible to some row of
// query tile [q0, q1) (nkt if none): the others are never loaded.
template <int kBN>
FG_TC_DEV int64_t next_visible_key_tile(const AttentionParams& p, int64_t h, int64_t q0,
                                        int64_t q1, int64_t nkt, int64_t kt) {
  while (kt < nkt) {
    const int64_t k0 = kt * kBN, k1 = k0 + kBN < p.Nk ? k0 + kBN : p.Nk;
    if (tile_visibility(p, h, q0, q1, k0, k1) != TileVisibility::empty) break;
    ++kt;
  }
  return kt;
}

// The shared-memory base rounded up to 1024 bytes (the swizzle needs aligned tiles).
FG_TC_DEV uint32_t align1024(uint32_t addr) { return (addr + 1023u) & ~1023u; }

}  // namespace tc
}  // namespace attn
}  // namespace fg
