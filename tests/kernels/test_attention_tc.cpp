// Tests of the tensor-core attention kernels (kernels/attention/sm80/, sm90/).
//
// Every [cuda] case (they fail without a GPU of compute capability 8 or more) first requires
// that the dispatch tables choose a tensor-core kernel for it (wgmma on a Hopper GPU, where it
// exists for the case, mma.sync elsewhere; for the f32 forward 3xTF32 with FLASHGRAD_ALLOW_TF32=1,
// else SIMT), then runs every usable
// kernel of both tables by name against the fp64 reference (check_every_kernel in
// attention_testing.h: poisoned outputs, atomic and deterministic dQ, bit-reproducibility,
// bounds per kernel and dtype, one "measured" line per comparison). The CPU-only case checks
// which kernel the tables give each kind of call on described devices (H100, A100, 99 KB of
// shared memory, pre-Ampere, a build without sm_90a code).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "core/env.h"
#include "kernels/attention/attention.h"
#include "kernels/attention_testing.h"
#include "kernels/kernels.h"

using namespace fg;
using namespace fg::attention_test;

#ifdef FLASHGRAD_WITH_CUDA
namespace {

// A call of contiguous [B, N, H, D] tensors at 16-byte aligned (never dereferenced) addresses.
AttentionParams dispatch_case(DType dtype, int64_t D, int64_t Nq = 256, int64_t Nk = 256) {
  AttentionParams p;
  p.dtype = dtype;
  p.B = 2, p.Nq = Nq, p.Nk = Nk, p.Hq = 4, p.Hkv = 2, p.D = D;
  set_contiguous_strides(p);
  p.softmax_scale = 1.0 / std::sqrt(double(D));
  void* at = reinterpret_cast<void*>(uintptr_t(1) << 20);
  p.q = p.k = p.v = p.o = p.lse = p.do_ = p.dq = p.dk = p.dv = at;
  return p;
}

std::string fwd(const AttentionParams& p, const AttentionDevice& dev) {
  return flash_attention_forward_kernel(p, dev);
}
std::string bwd(const AttentionParams& p, const AttentionDevice& dev) {
  return flash_attention_backward_kernel(p, dev);
}
// Whether the table's kernel `name` could run p on dev (whether or not it is chosen).
bool usable(const std::vector<AttentionKernel>& table, const char* name, const AttentionParams& p,
            const AttentionDevice& dev) {
  for (const AttentionKernel& k : table)
    if (std::string(k.name) == name) return k.usable(p, dev);
  return false;
}

}  // namespace

// The tables' rules for devices described, not queried: no GPU needed, so CI checks which kernel
// each kind of call gets on an H100, an A100, a GPU with 99 KB of shared memory per block
// (sm_86/89/120), a pre-Ampere one, and an H100 with a build that lacks sm_90a code.
TEST_CASE("attention dispatch: the kernel of each call, per device (no GPU needed)",
          "[attention]") {
  if (std::getenv("FLASHGRAD_ATTENTION_SIMT") || std::getenv("FLASHGRAD_ATTENTION_WGMMA") ||
      std::getenv("FLASHGRAD_ATTENTION_TMA") || std::getenv("FLASHGRAD_ATTENTION_TMA_BWD") ||
      cuda::allow_tf32()) {
    WARN("not checked: the environment overrides the choice (FLASHGRAD_ATTENTION_*, "
         "FLASHGRAD_ALLOW_TF32)");
    return;
  }
  const AttentionDevice h100{9, 227 * 1024, true}, h100_no_sm90a{9, 227 * 1024, false};
  const AttentionDevice a100{8, 163 * 1024, true}, ada{8, 99 * 1024, true};
  const AttentionDevice volta{7, 96 * 1024, true};
  // A plain 16-bit call (no mask, aligned rows) per head dim and device: the TMA forward and
  // the wgmma backward on Hopper at D 64/128; mma.sync elsewhere (D 96 rows padded to 128 in
  // shared memory), its backward where its shared memory fits a block (162 KB at D 96/128, 210
  // KB at 256: two warps per 16 keys); SIMT before Ampere.
  struct Want {
    int64_t D;
    const AttentionDevice* dev;
    const char *device, *fwd, *bwd;
  };
  const Want wants[] = {
      {64, &h100, "H100", "tma", "wgmma"},        {128, &h100, "H100", "tma", "wgmma"},
      {96, &h100, "H100", "mma", "mma"},          {256, &h100, "H100", "mma", "mma"},
      {64, &h100_no_sm90a, "H100, no sm_90a code", "mma", "mma"},
      {128, &h100_no_sm90a, "H100, no sm_90a code", "mma", "mma"},
      {96, &h100_no_sm90a, "H100, no sm_90a code", "mma", "mma"},
      {256, &h100_no_sm90a, "H100, no sm_90a code", "mma", "mma"},
      {64, &a100, "A100", "mma", "mma"},          {128, &a100, "A100", "mma", "mma"},
      {96, &a100, "A100", "mma", "mma"},          {256, &a100, "A100", "mma", "simt"},
      {64, &ada, "99 KB", "mma", "mma"},          {128, &ada, "99 KB", "mma", "simt"},
      {96, &ada, "99 KB", "mma", "simt"},         {256, &ada, "99 KB", "mma", "simt"},
      {64, &volta, "sm_70", "simt", "simt"},      {128, &volta, "sm_70", "simt", "simt"},
      {96, &volta, "sm_70", "simt", "simt"},      {256, &volta, "sm_70", "simt", "simt"},
  };
  for (DType t : {DType::bf16, DType::f16}) {
    INFO(dtype_name(t));
    for (const Want& w : wants) {
      INFO("D " << w.D << " on " << w.device);
      const AttentionParams p = dispatch_case(t, w.D);
      CHECK(fwd(p, *w.dev) == w.fwd);
      CHECK(bwd(p, *w.dev) == w.bwd);
      // The warp-specialised backward (chosen only with FLASHGRAD_ATTENTION_TMA_BWD=1) can run
      // exactly where the wgmma one is chosen.
      CHECK(usable(flash_attention_backward_kernels(), "tma", p, *w.dev) ==
            (std::string(w.bwd) == "wgmma"));
    }
    // A block mask rules the TMA forward out: wgmma at D 64, mma.sync at 128.
    for (int64_t D : {64, 128}) {
      INFO("D " << D << ", block mask");
      AttentionParams p = dispatch_case(t, D);
      const std::vector<uint8_t> mask = sliding_window_block_mask(p.Nq, p.Nk, 64, true);
      p.block_mask = mask.data();
      CHECK(fwd(p, h100) == (D == 64 ? "wgmma" : "mma"));
      CHECK(bwd(p, h100) == "wgmma");
      // It skips masked tiles as the wgmma one does.
      CHECK(usable(flash_attention_backward_kernels(), "tma", p, h100));
    }
    // D 32: SIMT, except for a decode shape (few query rows, no dropout or mask): split-KV.
    AttentionParams p = dispatch_case(t, 32);
    CHECK(fwd(p, h100) == "simt");
    CHECK(bwd(p, h100) == "simt");
    CHECK(fwd(dispatch_case(t, 256, 1, 8192), h100) == "splitkv");
    CHECK(fwd(dispatch_case(t, 96, 1, 8192), h100) == "mma");  // no decode kernel at 96
    p = dispatch_case(t, 64, 1, 8192);
    CHECK(fwd(p, h100) == "splitkv");
    CHECK(fwd(p, volta) == "splitkv");
    p.dropout_p = 0.1;
    CHECK(fwd(p, h100) == "tma");
    // Misaligned rows (a stride off 16 bytes) or a non-positive scale: SIMT.
    p = dispatch_case(t, 64);
    p.k_seq_stride += 1;
    CHECK(fwd(p, h100) == "simt");
    CHECK(bwd(p, h100) == "simt");
    p = dispatch_case(t, 64);
    p.dq_seq_stride += 1;
    CHECK(fwd(p, h100) == "tma");
    CHECK(bwd(p, h100) == "simt");
    p = dispatch_case(t, 64);
    p.softmax_scale = -0.125;
    CHECK(fwd(p, h100) == "simt");
  }
  // fp32: SIMT by default (3xTF32 only with FLASHGRAD_ALLOW_TF32=1), at every head dim; f64
  // always SIMT.
  for (int64_t D : {64, 96, 128, 256}) {
    INFO("f32 D " << D);
    const AttentionParams p = dispatch_case(DType::f32, D);
    CHECK(fwd(p, h100) == "simt");
    CHECK(bwd(p, h100) == "simt");
  }
  CHECK(fwd(dispatch_case(DType::f32, 128, 1, 8192), h100) == "splitkv");
  CHECK(fwd(dispatch_case(DType::f32, 256, 1, 8192), h100) == "simt");  // decode: 16-bit at 256
  const AttentionParams p = dispatch_case(DType::f64, 64);
  CHECK(fwd(p, h100) == "simt");
  CHECK(bwd(p, h100) == "simt");
}
#endif

#ifdef FLASHGRAD_WITH_CUDA
namespace {

bool usable(const std::vector<AttentionKernel>& table, const char* name, const AttentionParams& p) {
  return usable(table, name, p, attention_current_device());
}

// The kernels the tables choose for a 16-bit case are tensor-core ones: on a Hopper GPU the
// warp-specialised TMA forward (the wgmma one, D 64 only, where a block mask rules it out) and
// the wgmma backward, mma.sync elsewhere, except that a decode shape (a few query rows, no
// dropout or mask) takes the split-KV forward; then every kernel against the reference.
template <typename T> void check_tc(const Problem<T>& pr) {
  const Case& c = pr.c;
  {
    DeviceProblem<T> dev(pr);
    const bool wgmma = usable(flash_attention_backward_kernels(), "wgmma", dev.p);
    const bool decode = usable(flash_attention_forward_kernels(), "splitkv", dev.p);
    INFO(describe(c));
    CHECK(decode == (c.Nq <= 8 && c.p == 0 && c.mask.empty()));
    const char* hopper_fwd = c.mask.empty() ? "tma" : c.D == 64 ? "wgmma" : "mma";
    REQUIRE(std::string(flash_attention_forward_kernel(dev.p)) ==
            (decode ? "splitkv" : wgmma ? hopper_fwd : "mma"));
    // FLASHGRAD_ATTENTION_TMA_BWD=1 makes the warp-specialised backward the choice there.
    const bool tma_bwd = env_flag("FLASHGRAD_ATTENTION_TMA_BWD");
    REQUIRE(std::string(flash_attention_backward_kernel(dev.p)) ==
            (wgmma ? (tma_bwd ? "tma" : "wgmma") : "mma"));
  }
  check_every_kernel(pr);
}
template <typename T> void check_tc(const Case& c) { check_tc(Problem<T>(c)); }

template <typename F> void for_tc_types(F f) {
  for (int64_t D : {64, 128}) {
    f(bfloat16{}, D);
    f(float16{}, D);
  }
}

}  // namespace

TEST_CASE("attention tc: odd and round sizes, both layouts", "[cuda][attention]") {
  require_cuda_device(8);
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    Case c;
    c.D = D;
    check_tc<T>(c);  // 37 x 53: partial query and key tiles
    c.B = 1, c.Nq = 1, c.Nk = 1;
    check_tc<T>(c);
    c.Nq = 300, c.Nk = 257;  // several query tiles, 5 key tiles, the last one key wide
    check_tc<T>(c);
    c.Nq = c.Nk = 256;  // round
    check_tc<T>(c);
    c.B = 2, c.Nq = c.Nk = 129, c.layout = Layout::fused_qkv;  // the GPT's q/k/v slices
    check_tc<T>(c);
    c.Nq = c.Nk = 63, c.causal = true, c.Hq = c.Hkv = 3;
    check_tc<T>(c);
  });
}

TEST_CASE("attention tc: causal bottom-right, Nq != Nk, fully masked rows",
          "[cuda][attention]") {
  require_cuda_device(8);
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    Case c;
    c.D = D, c.causal = true;
    c.Nq = 37, c.Nk = 150;
    check_tc<T>(c);
    c.Nq = 200, c.Nk = 70;  // rows i < 130 see no key
    check_tc<T>(c);
    c.B = 1, c.Nq = c.Nk = 333;
    check_tc<T>(c);
    c.Nq = 127, c.Nk = 129;
    check_tc<T>(c);
  });
  // Exactly O = 0 and LSE = -inf for rows that see nothing.
  Case c;
  c.causal = true, c.Nq = 200, c.Nk = 70, c.B = 1, c.Hq = c.Hkv = 1, c.D = 64;
  Problem<bfloat16> pr(c);
  DeviceProblem<bfloat16> dev(pr);
  const Values r = dev.forward(flash_attention_forward_kernel(dev.p));
  for (int64_t i = 0; i < 130; ++i) {
    REQUIRE(r.lse[size_t(i)] == -std::numeric_limits<double>::infinity());
    for (int64_t d = 0; d < c.D; ++d) REQUIRE(r.o[size_t(i * c.D + d)] == 0.0);
  }
  REQUIRE(std::isfinite(r.lse[130]));
}

TEST_CASE("attention tc: dropout, GQA and MQA", "[cuda][attention]") {
  require_cuda_device(8);
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    Case c;
    c.D = D, c.p = 0.1, c.Nq = 130, c.Nk = 97;
    check_tc<T>(c);
    c.Hq = 4, c.Hkv = 2, c.causal = true, c.p = 0.0;
    check_tc<T>(c);
    c.Hkv = 1, c.p = 0.5, c.Nq = 61, c.Nk = 190;
    check_tc<T>(c);
  });
}

TEST_CASE("attention tc: block masks", "[cuda][attention]") {
  require_cuda_device(8);
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    Case c;
    c.D = D, c.B = 1, c.Nq = 300, c.Nk = 330;
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 70, true);
    c.causal = true;
    check_tc<T>(c);
    c.mask = global_local_block_mask(c.Nq, c.Nk, 10, 64);
    c.causal = false, c.p = 0.1;
    check_tc<T>(c);
    // Per-head mask: head 0 loses query rows 64..127 entirely (inside one 128-row kernel
    // tile, so only some warps of a block are empty), head 1 loses key tile 2.
    c.p = 0.0, c.Hq = 2, c.Hkv = 1, c.mask_heads = 2;
    const int64_t nbq = 5, nbk = 6;
    c.mask.assign(size_t(2 * nbq * nbk), 1);
    for (int64_t bj = 0; bj < nbk; ++bj) c.mask[size_t((0 * nbq + 1) * nbk + bj)] = 0;
    for (int64_t bi = 0; bi < nbq; ++bi) c.mask[size_t((1 * nbq + bi) * nbk + 2)] = 0;
    check_tc<T>(c);
  });
}

// The deterministic backward is bit-reproducible (check_every_kernel); dK and dV have no atomics
// in either mode, so with atomic dQ they are bit-identical from run to run as well. At D 64 and
// 128, for every tensor-core backward (wgmma and mma.sync on a Hopper GPU), on fused inputs.
TEST_CASE("attention tc: repeatable, and misaligned rows fall back to SIMT",
          "[cuda][attention]") {
  require_cuda_device(8);
  for (int64_t D : {64, 128}) {
    Case c;
    c.D = D, c.Nq = c.Nk = 190, c.causal = true, c.p = 0.2, c.layout = Layout::fused_qkv;
    Problem<bfloat16> pr(c);
    check_tc(pr);
    DeviceProblem<bfloat16> dev(pr);
    dev.use_reference_forward();
    for (const AttentionKernel& k : flash_attention_backward_kernels()) {
      if (!k.usable(dev.p, attention_current_device()) || std::string(k.name) == "simt") continue;
      INFO("backward " << k.name << " with atomic dQ, run twice | " << describe(c));
      const Values a = dev.backward(k.name, false), b = dev.backward(k.name, false);
      CHECK(a.dk == b.dk);
      CHECK(a.dv == b.dv);
    }
  }

  // A seq stride that is not a multiple of 8 elements cannot use 16-byte cp.async: the
  // dispatcher must say so (and the SIMT path then computes the call).
  Case c;
  c.D = 128, c.Nq = 190, c.Nk = 250;
  Problem<bfloat16> pr(c);
  DeviceProblem<bfloat16> run(pr);
  auto simt = [](const char* name) { return std::string(name) == "simt"; };
  AttentionParams p = run.p;
  p.q_seq_stride += 1;
  CHECK(simt(flash_attention_forward_kernel(p)));
  p = run.p;
  p.k = static_cast<bfloat16*>(p.k) + 4;  // 8-byte aligned only
  CHECK(simt(flash_attention_forward_kernel(p)));
  CHECK_THROWS_WITH(flash_attention_forward_cuda_with("mma", p), Catch::Contains("cannot run"));
  p = run.p;
  p.do_seq_stride += 1;  // the backward also needs dO (and dQ, dK, dV) aligned
  CHECK_FALSE(simt(flash_attention_forward_kernel(p)));
  CHECK(simt(flash_attention_backward_kernel(p)));
  p = run.p;
  p.dv = static_cast<bfloat16*>(p.dv) + 2;
  CHECK(simt(flash_attention_backward_kernel(p)));
  p = run.p;
  CHECK_FALSE(simt(flash_attention_forward_kernel(p)));
  CHECK_FALSE(simt(flash_attention_backward_kernel(p)));
  CHECK_THROWS_WITH(flash_attention_forward_cuda_with("fast", p),
                    Catch::Contains("no attention kernel named"));
}

TEST_CASE("attention tc: long sequence through the cp.async pipeline",
          "[cuda][attention]") {
  require_cuda_device(8);
  Case c;
  c.B = 1, c.Hq = c.Hkv = 1, c.Nq = 700, c.Nk = 1100, c.D = 128;
  check_tc<bfloat16>(c);
  c.causal = true, c.D = 64;
  check_tc<float16>(c);
}

// fp32 forward on tensor cores (3xTF32): fp32-level accuracy against the double reference
// (plain TF32, with its 11-bit mantissa, would miss the bounds by orders of magnitude), the
// same masks and dropout bits as the SIMT forward; the backward is the SIMT one. The default
// choice takes it only with FLASHGRAD_ALLOW_TF32=1 (else the SIMT forward, whose error is
// within 2x of PyTorch's fp32 SDPA); check_every_kernel runs it by name either way.
TEST_CASE("attention tc: fp32 forward (3xTF32)", "[cuda][attention]") {
  require_cuda_device(8);
  for (int64_t D : {64, 128}) {
    std::vector<Case> cases(6);
    for (Case& c : cases) c.D = D;  // [0]: 37 x 53, partial tiles
    cases[1].Nq = 300, cases[1].Nk = 257, cases[1].causal = true;
    cases[2].Nq = 200, cases[2].Nk = 70, cases[2].causal = true;  // rows that see no key
    cases[3].p = 0.2, cases[3].Hq = 4, cases[3].Hkv = 2, cases[3].Nq = 130, cases[3].Nk = 97;
    cases[4].B = 1, cases[4].Hq = cases[4].Hkv = 1, cases[4].Nq = 300, cases[4].Nk = 330;
    cases[4].mask = sliding_window_block_mask(300, 330, 70, true), cases[4].causal = true;
    cases[5].Nq = cases[5].Nk = 129, cases[5].layout = Layout::fused_qkv;
    for (const Case& c : cases) {
      Problem<float> pr(c);
      {
        DeviceProblem<float> dev(pr);
        INFO(describe(c));
        REQUIRE(std::string(flash_attention_forward_kernel(dev.p)) ==
                (cuda::allow_tf32() ? "3xtf32" : "simt"));
        REQUIRE(std::string(flash_attention_backward_kernel(dev.p)) == "simt");
      }
      check_every_kernel(pr);
    }
  }
}
#endif  // FLASHGRAD_WITH_CUDA
