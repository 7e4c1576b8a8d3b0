// The Hopper tensor memory accelerator (TMA) and shared-memory barriers (mbarrier), as the
// warp-specialised forward (sm90ws/forward.cuh) uses them; device side only. The tensor maps
// themselves are built on the host (common/tensor_map.h).
//
// An mbarrier is a 64-bit word in shared memory with an arrival count and a transaction count.
// A phase completes when the expected arrivals have arrived and the transaction bytes announced
// with expect_tx have landed; waiters name the phase by its parity (0, 1, 0, ...). A TMA copy
// signals its bytes to the barrier it names. A fresh barrier is in phase 0, and a wait on
// parity 1 returns at once (it asks for the phase before), which is how a producer's first pass
// over its empty ring goes through (PTX ISA, "mbarrier" and "cp.async.bulk.tensor").
#pragma once
#include <cstdint>

#include "kernels/attention/common/ptx.cuh"

namespace fg {
namespace attn {

FG_ATTN_DEV void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
// Makes the initialised barriers visible to the other threads and to the async proxy (TMA);
// a __syncthreads must follow before anyone uses them.
FG_ATTN_DEV void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// One arrival that also announces `bytes` of transactions (the TMA copies that follow).
FG_ATTN_DEV void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
FG_ATTN_DEV void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase of parity `parity` has completed.
FG_ATTN_DEV void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
}

// A 4-d tile of the tensor map at `map` (a __grid_constant__ kernel parameter) at coordinates
// (c0, c1, c2, c3), innermost first, into shared memory at `dst`; its bytes complete on `bar`.
// Elements outside the tensor are written as zeros (and still count as transferred bytes).
FG_ATTN_DEV void tma_load_4d(uint32_t dst, const void* map, uint32_t bar, int c0, int c1, int c2,
                             int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}
FG_ATTN_DEV void tma_prefetch_map(const void* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Adds `bytes` (a multiple of 16) of fp32 values from shared memory at src into global memory at
// dst (16-byte aligned), element by element, as reductions performed in L2 (PTX
// "cp.reduce.async.bulk"): one instruction of one thread instead of a red.global per element.
// bulk_commit closes a bulk group; bulk_wait_read<N> waits until at most N groups are still
// reading their shared memory (which may then be written again), bulk_wait<N> until at most N
// are incomplete.
FG_ATTN_DEV void bulk_reduce_add_f32(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(
                   reinterpret_cast<uint64_t>(dst)),
               "r"(src), "r"(bytes)
               : "memory");
}
FG_ATTN_DEV void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
template <int N> FG_ATTN_DEV void bulk_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
template <int N> FG_ATTN_DEV void bulk_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// Register reallocation between the warpgroups of a block (all warps of a warpgroup execute
// the same one): the producer gives registers back, the consumers take them.
template <int N> FG_ATTN_DEV void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> FG_ATTN_DEV void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

}  // namespace attn
}  // namespace fg
