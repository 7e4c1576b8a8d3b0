// wgmma wrappers (sm_90a) of the Hopper attention kernels (sm90/): fences, the 128-byte-swizzle
// shared-memory descriptor, and m64nNk16 with A from shared memory or from registers.
//
// The shared tiles of load_tile_async (common/tiles.cuh) with 64-element (128-byte) rows,
// 16-byte chunk c of row r at c ^ (r % 8) and 1024-byte alignment, are exactly the hardware's
// 128-byte swizzle, so wgmma reads them as they are. Descriptor fields (PTX ISA, "matrix
// descriptor"): start address, leading and stride byte offsets (>> 4), swizzle mode 1 = 128 B.
// In the 128-byte-swizzled canonical layouts 8-row groups are SBO = 1024 bytes apart, K-major
// needs no LBO, and MN-major's LBO (the distance between 64-element column blocks) is unused
// with 64 columns. A k16 step inside a K-major row is +32 bytes on the start address; in an
// MN-major tile it is 16 rows, +2048 bytes.
//
// A wgmma is warpgroup-wide (4 consecutive warps, the first at a warp index divisible by 4) and
// asynchronous. For m64nN each warp holds rows 16 w .. 16 w + 15 of the accumulator in the
// mma.m16n8k16 C layout, n8 block j in d[j][0..3]. A comes from a descriptor (_ss) or from
// registers in the mma.m16n8k16 A layout (_rs); B always from a descriptor, K-major
// (kTransB = 0) or MN-major (kTransB = 1). The accumulator is always added to (scale-d = 1);
// callers zero it first.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/attention/common/ptx.cuh"

namespace fg {
namespace attn {

FG_ATTN_DEV void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
FG_ATTN_DEV void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
FG_ATTN_DEV void wgmma_wait_all() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Waits until at most N of the warpgroup's committed wgmma groups are still in flight.
template <int N> FG_ATTN_DEV void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Shared-memory writes of the generic proxy (st.shared, cp.async), made visible to the async
// proxy that wgmma reads through.
FG_ATTN_DEV void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Keeps the compiler from moving accesses of an accumulator across the asynchronous wgmma.
template <int N> FG_ATTN_DEV void fence_accumulator(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(r[i][e])::"memory");
}

// Keeps the compiler from reusing the registers of a wgmma's A operand (P from registers)
// before the wgmma that reads them is known complete.
template <int N> FG_ATTN_DEV void fence_operand(uint32_t (&a)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[i][e])::"memory");
}

// Descriptor of a 128-byte-swizzled operand at shared address `addr` (see the file comment).
FG_ATTN_DEV uint64_t sw128_descriptor(uint32_t addr, uint32_t lbo_bytes) {
  return uint64_t((addr >> 4) & 0x3FFFu) | (uint64_t((lbo_bytes >> 4) & 0x3FFFu) << 16) |
         (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

// The accumulator operands of an m64n32 (4 n8 blocks) and an m64n64 (8) wgmma.
#define FG_ATTN_ACC4(d)                                                                     \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), \
      "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]),            \
      "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
#define FG_ATTN_ACC8(d)                                                                     \
  FG_ATTN_ACC4(d), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
      "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]),            \
      "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
#define FG_ATTN_ACC16(d)                                                                    \
  FG_ATTN_ACC8(d), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), \
      "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]),          \
      "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]),       \
      "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]),       \
      "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]),       \
      "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]),       \
      "+f"(d[15][2]), "+f"(d[15][3])
#define FG_ATTN_REGS16                                                                        \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define FG_ATTN_REGS32                                                                        \
  FG_ATTN_REGS16 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, "  \
                 "%30, %31"

#define FG_ATTN_REGS64 FG_ATTN_REGS32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "      \
  "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, " \
  "%60, %61, %62, %63"

// m64n64k16, A and B from shared memory (A K-major, or MN-major with kTransA = 1).
template <typename T, int kTransB, int kTransA = 0>
FG_ATTN_DEV void wgmma_m64n64k16_ss(float (&d)[8][4], uint64_t desc_a, uint64_t desc_b) {
#define FG_ATTN_WGMMA_N64_SS(TY)                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                               \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" FG_ATTN_REGS32 \
               "}, %32, %33, p, 1, 1, %36, %35;\n"                                       \
               "}\n"                                                                     \
               : FG_ATTN_ACC8(d)                                                         \
               : "l"(desc_a), "l"(desc_b), "n"(1), "n"(kTransB), "n"(kTransA))
  if constexpr (std::is_same_v<T, bfloat16>) FG_ATTN_WGMMA_N64_SS("bf16");
  else FG_ATTN_WGMMA_N64_SS("f16");
#undef FG_ATTN_WGMMA_N64_SS
}

// m64n128k16, A and B from shared memory, both K-major (the score tile of 128 keys).
template <typename T>
FG_ATTN_DEV void wgmma_m64n128k16_ss(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b) {
#define FG_ATTN_WGMMA_N128_SS(TY)                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                               \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" FG_ATTN_REGS64 \
               "}, %64, %65, p, 1, 1, 0, 0;\n"                                           \
               "}\n"                                                                     \
               : FG_ATTN_ACC16(d)                                                        \
               : "l"(desc_a), "l"(desc_b), "n"(1))
  if constexpr (std::is_same_v<T, bfloat16>) FG_ATTN_WGMMA_N128_SS("bf16");
  else FG_ATTN_WGMMA_N128_SS("f16");
#undef FG_ATTN_WGMMA_N128_SS
}

// m64n32k16, A and B from shared memory (d[j] = n8 block j).
template <typename T, int kTransB, int kTransA>
FG_ATTN_DEV void wgmma_m64n32k16_ss(float (&d)[4][4], uint64_t desc_a, uint64_t desc_b) {
#define FG_ATTN_WGMMA_N32_SS(TY)                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                               \
               "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " {" FG_ATTN_REGS16 \
               "}, %16, %17, p, 1, 1, %20, %19;\n"                                       \
               "}\n"                                                                     \
               : FG_ATTN_ACC4(d)                                                         \
               : "l"(desc_a), "l"(desc_b), "n"(1), "n"(kTransB), "n"(kTransA))
  if constexpr (std::is_same_v<T, bfloat16>) FG_ATTN_WGMMA_N32_SS("bf16");
  else FG_ATTN_WGMMA_N32_SS("f16");
#undef FG_ATTN_WGMMA_N32_SS
}

// m64n64k16, A from registers.
template <typename T, int kTransB>
FG_ATTN_DEV void wgmma_m64n64k16_rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b) {
#define FG_ATTN_WGMMA_N64_RS(TY)                                                          \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                               \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" FG_ATTN_REGS32 \
               "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n"                           \
               "}\n"                                                                     \
               : FG_ATTN_ACC8(d)                                                         \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(1), "n"(kTransB))
  if constexpr (std::is_same_v<T, bfloat16>) FG_ATTN_WGMMA_N64_RS("bf16");
  else FG_ATTN_WGMMA_N64_RS("f16");
#undef FG_ATTN_WGMMA_N64_RS
}

#undef FG_ATTN_ACC4
#undef FG_ATTN_ACC8
#undef FG_ATTN_ACC16
#undef FG_ATTN_REGS64
#undef FG_ATTN_REGS16
#undef FG_ATTN_REGS32

}  // namespace attn
}  // namespace fg
