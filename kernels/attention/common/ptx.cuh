// PTX wrappers of the tensor-core attention kernels (sm80/, sm90/): cp.async, ldmatrix,
// mma.sync (m16n8k16 for bf16 / f16, m16n8k8 for tf32), ex2, the tf32 split, shared-memory
// stores and the float2 atomic add. One asm block per instruction; where bf16 and f16 differ
// only in the PTX type name, the name is a string chosen by the dtype.
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

#include "core/half.h"

#define FG_ATTN_DEV __device__ __forceinline__

namespace fg {
namespace attn {

FG_ATTN_DEV uint32_t smem_u32(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// The shared-memory base rounded up to 1024 bytes (the swizzled tiles need that alignment).
FG_ATTN_DEV uint32_t align1024(uint32_t addr) { return (addr + 1023u) & ~1023u; }

// ---------------------------------------------------------------------------------------------
// Asynchronous copies global -> shared

// 16 bytes, bypassing L1; src_bytes = 0 zero-fills the destination (rows past the end of the
// sequence) without reading src.
FG_ATTN_DEV void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
// 4 bytes (per-row fp32 values); src_bytes = 0 zero-fills.
FG_ATTN_DEV void cp_async_4(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}
FG_ATTN_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
FG_ATTN_DEV void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> FG_ATTN_DEV void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---------------------------------------------------------------------------------------------
// Shared memory

// Four 8x8 matrices of 16-bit elements, rows given by the lanes (see the file comment);
// kTrans loads them transposed.
template <bool kTrans = false> FG_ATTN_DEV void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
#define FG_ATTN_LDMATRIX(TRANS)                                                                \
  asm volatile("ldmatrix.sync.aligned.m8n8.x4" TRANS ".shared.b16 {%0, %1, %2, %3}, [%4];\n" \
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                               \
               : "r"(addr)                                                                    \
               : "memory")
  if constexpr (kTrans) FG_ATTN_LDMATRIX(".trans");
  else FG_ATTN_LDMATRIX("");
#undef FG_ATTN_LDMATRIX
}
FG_ATTN_DEV void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) { ldmatrix_x4<true>(r, addr); }

FG_ATTN_DEV void st_shared_u32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
FG_ATTN_DEV void st_shared_f32(uint32_t addr, float v) {
  asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(addr), "f"(v) : "memory");
}
FG_ATTN_DEV void st_shared_zero16(uint32_t addr) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(addr), "r"(0u) : "memory");
}

// Named barriers (id 1 to 15; 0 is __syncthreads) among `threads` threads, a multiple of 32:
// sync waits for all of them, arrive counts this warp in without waiting.
FG_ATTN_DEV void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
FG_ATTN_DEV void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---------------------------------------------------------------------------------------------
// mma.sync

// D (16x8 f32) += A (16x16, row) * B (16x8, col), T = bfloat16 or float16.
template <typename T>
FG_ATTN_DEV void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#define FG_ATTN_MMA_16816(TY)                                                         \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." TY "." TY ".f32 {%0, %1, %2, %3}, " \
               "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"                          \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                           \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
  if constexpr (std::is_same_v<T, bfloat16>) FG_ATTN_MMA_16816("bf16");
  else FG_ATTN_MMA_16816("f16");
#undef FG_ATTN_MMA_16816
}

// D (16x8 f32) += A (16x8 tf32, row) * B (8x8 tf32, col). Fragments (g = lane / 4, t = lane % 4):
// a0 (row g, col t), a1 (row g+8, col t), a2 (row g, col t+4), a3 (row g+8, col t+4);
// b0 (k row t, col g), b1 (k row t+4, col g); C as for m16n8k16.
FG_ATTN_DEV void mma_1688_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// fp32 on tensor cores to about fp32 accuracy ("3xTF32"): x = hi + lo with hi = tf32(x) and
// lo = tf32(x - hi), and a product taken as lo*hi + hi*lo + hi*hi (small terms first); the
// dropped lo*lo term and lo's own rounding are near 2^-22 relative, against 2^-11 for plain TF32.
//
// The three products go into a zeroed accumulator that is then added to c with an fp32 add
// (round to nearest), not into c itself. The tensor cores' own fp32 accumulation does not round
// to nearest (it truncates on V100, T4 and A100: Fasi et al., "Numerical behavior of NVIDIA
// tensor cores", PeerJ Computer Science 7:e330, 2021), and P V chained through hundreds of mma
// calls over the keys had 10-38x the error of PyTorch's fp32 SDPA on an H100; added this way,
// 0.7-5.5x (bench/RESULTS.md, "fp32 attention accuracy").
FG_ATTN_DEV uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
FG_ATTN_DEV void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - __uint_as_float(hi));
}
FG_ATTN_DEV void mma_1688_3xtf32(float (&c)[4], const uint32_t (&ahi)[4], const uint32_t (&alo)[4],
                                 uint32_t bhi0, uint32_t bhi1, uint32_t blo0, uint32_t blo1) {
  float f[4] = {0.f, 0.f, 0.f, 0.f};
  mma_1688_tf32(f, alo, bhi0, bhi1);
  mma_1688_tf32(f, ahi, blo0, blo1);
  mma_1688_tf32(f, ahi, bhi0, bhi1);
#pragma unroll
  for (int i = 0; i < 4; ++i) c[i] += f[i];
}

// ---------------------------------------------------------------------------------------------
// Element-wise

FG_ATTN_DEV float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats -> one 32-bit register of two 16-bit values, `lo` in the low half (the lower
// column, as the mma fragments and memory order want).
template <typename T> FG_ATTN_DEV uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// dst[0..1] += (a, b) at an 8-byte aligned address of global memory: one 8-byte atomic from
// sm_90 on, two 4-byte ones before.
FG_ATTN_DEV void atomic_add_f32x2(float* dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(dst), make_float2(a, b));
#else
  atomicAdd(dst, a);
  atomicAdd(dst + 1, b);
#endif
}

}  // namespace attn
}  // namespace fg
