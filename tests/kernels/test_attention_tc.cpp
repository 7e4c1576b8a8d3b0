// Tests of the tensor-core attention kernels (kernels/attention/sm80/, sm90/).
//
// Every [cuda] case builds a random problem on the host, computes the fp64 reference of the
// library (kernels/attention/cpu/reference.h: the same attention_allowed mask rule and
// attention_dropout_keep bits as params.h defines), and runs on the GPU, by name:
//   - the kernels the dispatch tables choose (asserting that they are tensor-core ones), with dQ
//     by atomics and, again, with the deterministic dQ pass,
//   - the SIMT forward and backward,
//   - on a Hopper GPU, also the mma.sync kernels that wgmma ones take precedence over,
// with poisoned (NaN) outputs, so that an element the kernel did not write fails the test.
// Tolerances: relative L2 < 1e-2 for O, dQ, dK, dV (bf16/fp16), < 1e-4 for LSE (fp32 from exact
// 16-bit products, so a wrong scale or a lost tile shows), and -inf / 0 exactly where a row sees
// no key. The CPU-only cases check the dispatch tables' eligibility rules.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/attention/attention.h"
#include "core/philox.h"
#include "core/error.h"

#ifdef FLASHGRAD_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

using namespace fg;

namespace {

template <typename T> double to_d(T x) { return double(float(x)); }
template <typename T> T from_d(double x) { return T(float(x)); }

struct TcCfg {
  int64_t B = 2, Nq = 37, Nk = 53, Hq = 2, Hkv = 2, D = 64;
  bool causal = false;
  double p = 0.0;
  std::vector<uint8_t> mask;
  int64_t mask_heads = 1;
  uint64_t seed = 99, offset = 5;
};

[[maybe_unused]] double rel_l2(const std::vector<double>& a, const std::vector<double>& r) {
  REQUIRE(a.size() == r.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(r[i])) {
      if (a[i] != r[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    num += (a[i] - r[i]) * (a[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

// Host problem: 16-bit inputs and a double reference of O, LSE, dQ, dK, dV.
template <typename T> struct TcProblem {
  TcCfg c;
  AttentionParams p;
  std::vector<T> q, k, v, dO;
  std::vector<double> ro, rlse, rdq, rdk, rdv;

  explicit TcProblem(const TcCfg& cfg) : c(cfg) {
    p.B = c.B, p.Nq = c.Nq, p.Nk = c.Nk, p.Hq = c.Hq, p.Hkv = c.Hkv, p.D = c.D;
    set_contiguous_strides(p);
    p.dtype = dtype_of<T>::value;
    p.softmax_scale = 1.0 / std::sqrt(double(c.D));
    p.causal = c.causal;
    p.dropout_p = c.p;
    p.seed = c.seed, p.offset = c.offset;
    p.block_mask_heads = c.mask_heads;
    // Fresh inputs per problem (the seed mixes in the shape).
    std::mt19937_64 gen(uint64_t(c.Nq * 1000003 + c.Nk * 7919 + c.D * 31 + c.Hq) ^ c.seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    auto fill = [&](std::vector<T>& x, int64_t n, double sigma) {
      x.resize(size_t(n));
      for (auto& e : x) e = from_d<T>(sigma * nd(gen));
    };
    const int64_t nq = c.B * c.Nq * c.Hq * c.D, nk = c.B * c.Nk * c.Hkv * c.D;
    fill(q, nq, 1.5), fill(k, nk, 1.5), fill(v, nk, 1.0), fill(dO, nq, 1.0);
    reference();
  }

  // The fp64 reference (kernels/attention/cpu/reference.h) on the rounded inputs.
  void reference() {
    auto wide = [](const std::vector<T>& x) {
      std::vector<double> d(x.size());
      for (size_t e = 0; e < x.size(); ++e) d[e] = to_d(x[e]);
      return d;
    };
    const std::vector<double> qd = wide(q), kd = wide(k), vd = wide(v), dod = wide(dO);
    AttentionParams pm = p;
    pm.block_mask = c.mask.empty() ? nullptr : c.mask.data();  // host copy for the reference
    ro.assign(q.size(), 0), rdq.assign(q.size(), 0), rdk.assign(k.size(), 0);
    rdv.assign(k.size(), 0), rlse.assign(size_t(c.B * c.Hq * c.Nq), 0);
    attention_reference_forward(pm, qd.data(), kd.data(), vd.data(), ro.data(), rlse.data());
    attention_reference_backward(pm, qd.data(), kd.data(), vd.data(), dod.data(), rdq.data(),
                                 rdk.data(), rdv.data());
  }
};

}  // namespace

TEST_CASE("attention tc: eligibility rule (no GPU needed for the negative cases)", "[attention]") {
  // These answers need no device query.
  AttentionParams p;
  p.B = 1, p.Nq = p.Nk = 64, p.Hq = p.Hkv = 1, p.D = 64;
  set_contiguous_strides(p);
  p.softmax_scale = 0.125;
  // f64 never takes a tensor-core kernel, f32 only the forward (3xTF32).
  p.dtype = DType::f64;
#ifdef FLASHGRAD_WITH_CUDA
  CHECK(std::string(flash_attention_forward_kernel(p)) == "simt");
  CHECK(std::string(flash_attention_backward_kernel(p)) == "simt");
  p.dtype = DType::f32;
  CHECK(std::string(flash_attention_backward_kernel(p)) == "simt");
#endif
  p.dtype = DType::bf16;
  p.D = 32;
  set_contiguous_strides(p);
#ifdef FLASHGRAD_WITH_CUDA
  CHECK(std::string(flash_attention_forward_kernel(p)) == "simt");
#endif
  SUCCEED();
}

#ifdef FLASHGRAD_WITH_CUDA
namespace {

bool tc_gpu() {
  int n = 0, major = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return false;
  FG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  return major >= 8;
}

template <typename T> struct DBuf {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DBuf(size_t count) : n(count) {
    FG_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T) + 64));
    FG_CUDA_CHECK(cudaMemset(ptr, 0xFF, std::max<size_t>(n, 1) * sizeof(T) + 64));  // NaN
  }
  explicit DBuf(const std::vector<T>& h) : DBuf(h.size()) {
    FG_CUDA_CHECK(cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DBuf() { cudaFree(ptr); }
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  void poison() { FG_CUDA_CHECK(cudaMemset(ptr, 0xFF, n * sizeof(T))); }
  std::vector<double> host_d() const {
    std::vector<T> h(n);
    FG_CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> d(n);
    for (size_t i = 0; i < n; ++i) d[i] = double(float(h[i]));
    return d;
  }
};

bool usable(const std::vector<AttentionKernel>& table, const char* name, const AttentionParams& p) {
  for (const AttentionKernel& k : table)
    if (std::string(k.name) == name) return k.usable(p);
  return false;
}

struct Outs {
  std::vector<double> o, lse, dq, dk, dv;
};

// Device buffers of one problem; forward (tc or simt), optionally the backward after it.
template <typename T> struct TcRun {
  const TcProblem<T>& pr;
  DBuf<T> q, k, v, dO, o, dq, dk, dv;
  DBuf<float> lse;
  DBuf<uint8_t> mask;
  AttentionParams p;

  explicit TcRun(const TcProblem<T>& problem)
      : pr(problem), q(pr.q), k(pr.k), v(pr.v), dO(pr.dO), o(pr.q.size()), dq(pr.q.size()),
        dk(pr.k.size()), dv(pr.k.size()), lse(size_t(pr.c.B * pr.c.Hq * pr.c.Nq)),
        mask(pr.c.mask.empty() ? std::vector<uint8_t>{1} : pr.c.mask) {
    p = pr.p;
    p.q = q.ptr, p.k = k.ptr, p.v = v.ptr, p.do_ = dO.ptr, p.o = o.ptr, p.lse = lse.ptr;
    p.dq = dq.ptr, p.dk = dk.ptr, p.dv = dv.ptr;
    p.block_mask = pr.c.mask.empty() ? nullptr : mask.ptr;
  }

  // Forward with kernel `fwd`, then optionally the backward with kernel `bwd` (by name, as
  // the dispatch table calls them).
  Outs run(const char* fwd, const char* bwd, bool backward, bool deterministic = false) {
    o.poison(), lse.poison(), dq.poison(), dk.poison(), dv.poison();
    flash_attention_forward_cuda_with(fwd, p);
    FG_CUDA_CHECK(cudaDeviceSynchronize());
    Outs r;
    if (backward) {
      AttentionParams pb = p;
      pb.deterministic = deterministic;
      DBuf<uint8_t> ws(flash_attention_backward_workspace_bytes(pb));
      pb.workspace = ws.ptr;
      flash_attention_backward_cuda_with(bwd, pb);
      FG_CUDA_CHECK(cudaDeviceSynchronize());
      r.dq = dq.host_d(), r.dk = dk.host_d(), r.dv = dv.host_d();
    }
    r.o = o.host_d(), r.lse = lse.host_d();
    return r;
  }
};

// dQ, dK, dV of one backward against the reference. With one key, P = 1, so dS = dP - D_i and
// dQ = dK = 0 in exact arithmetic; the reference is then rounding noise, and the computed dQ and
// dK are measured against the size of dV instead.
template <typename T> void check_grads(const TcProblem<T>& pr, const Outs& r, const char* what) {
  INFO(what);
  CHECK(rel_l2(r.dv, pr.rdv) < 1e-2);
  if (pr.c.Nk == 1) {
    auto norm = [](const std::vector<double>& v) {
      double n = 0;
      for (double x : v) n += x * x;
      return std::sqrt(n);
    };
    CHECK(std::isfinite(norm(r.dq)));
    CHECK(norm(r.dq) <= 1e-2 * norm(pr.rdv));
    CHECK(norm(r.dk) <= 1e-2 * norm(pr.rdv));
  } else {
    CHECK(rel_l2(r.dq, pr.rdq) < 1e-2);
    CHECK(rel_l2(r.dk, pr.rdk) < 1e-2);
  }
}

template <typename T> void check_tc(const TcCfg& c) {
  TcProblem<T> pr(c);
  TcRun<T> run(pr);
  // The default choice is a tensor-core kernel: on a Hopper GPU the wgmma ones (the forward at
  // D 64 only), mma.sync elsewhere.
  const bool wgmma = usable(flash_attention_backward_kernels(), "wgmma", run.p);
  const char* fwd = flash_attention_forward_kernel(run.p);
  const char* bwd = flash_attention_backward_kernel(run.p);
  REQUIRE(std::string(fwd) == (wgmma && c.D == 64 ? "wgmma" : "mma"));
  REQUIRE(std::string(bwd) == (wgmma ? "wgmma" : "mma"));
  const Outs tc = run.run(fwd, bwd, /*backward=*/true);
  const Outs det = run.run(fwd, bwd, /*backward=*/true, /*deterministic=*/true);
  const Outs simt = run.run("simt", "simt", /*backward=*/true);
  Outs mma;
  if (wgmma) mma = run.run("mma", "mma", /*backward=*/true);  // the mma.sync kernels as well
  INFO("dtype=" << dtype_name(pr.p.dtype) << " B=" << c.B << " Nq=" << c.Nq << " Nk=" << c.Nk
                << " Hq=" << c.Hq << " Hkv=" << c.Hkv << " D=" << c.D << " causal=" << c.causal
                << " p=" << c.p << " mask=" << !c.mask.empty() << " mask_heads=" << c.mask_heads);
  if (std::getenv("FG_ATTENTION_VERBOSE"))
    std::printf("tc %s Nq=%lld Nk=%lld D=%lld causal=%d p=%.2f mask=%d: o %.2e lse %.2e "
                "vs-simt %.2e dq %.2e dk %.2e dv %.2e (det dq %.2e, simt dq %.2e dk %.2e)%s\n",
                dtype_name(pr.p.dtype), (long long)c.Nq, (long long)c.Nk, (long long)c.D,
                int(c.causal), c.p, int(!c.mask.empty()), rel_l2(tc.o, pr.ro),
                rel_l2(tc.lse, pr.rlse), rel_l2(tc.o, simt.o), rel_l2(tc.dq, pr.rdq),
                rel_l2(tc.dk, pr.rdk), rel_l2(tc.dv, pr.rdv), rel_l2(det.dq, pr.rdq),
                rel_l2(simt.dq, pr.rdq), rel_l2(simt.dk, pr.rdk), wgmma ? " wgmma" : "");
  CHECK(rel_l2(tc.o, pr.ro) < 1e-2);
  CHECK(rel_l2(tc.lse, pr.rlse) < 1e-4);
  CHECK(rel_l2(simt.o, pr.ro) < 1e-2);  // the reference itself is sane
  CHECK(rel_l2(tc.o, simt.o) < 1e-2);
  CHECK(rel_l2(tc.lse, simt.lse) < 1e-4);
  if (wgmma) {
    INFO("mma.sync kernels (the default is wgmma here)");
    CHECK(rel_l2(mma.o, pr.ro) < 1e-2);
    CHECK(rel_l2(mma.lse, pr.rlse) < 1e-4);
    check_grads(pr, mma, "mma.sync backward");
  }
  check_grads(pr, tc, "tensor-core backward, atomic dQ");
  check_grads(pr, det, "tensor-core backward, deterministic dQ");
  check_grads(pr, simt, "SIMT backward");
}

template <typename F> void for_tc_types(F f) {
  for (int64_t D : {64, 128}) {
    f(bfloat16{}, D);
    f(float16{}, D);
  }
}

}  // namespace

TEST_CASE("attention tc: odd and round sizes", "[cuda][attention]") {
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    TcCfg c;
    c.D = D;
    check_tc<T>(c);  // 37 x 53: partial query and key tiles
    c.B = 1, c.Nq = 1, c.Nk = 1;
    check_tc<T>(c);
    c.Nq = 300, c.Nk = 257;  // several query tiles, 5 key tiles, the last one key wide
    check_tc<T>(c);
    c.Nq = c.Nk = 256;  // round
    check_tc<T>(c);
  });
}

TEST_CASE("attention tc: causal bottom-right, Nq != Nk, fully masked rows",
          "[cuda][attention]") {
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    TcCfg c;
    c.D = D, c.causal = true;
    c.Nq = 37, c.Nk = 150;
    check_tc<T>(c);
    c.Nq = 200, c.Nk = 70;  // rows i < 130 see no key
    check_tc<T>(c);
    c.B = 1, c.Nq = c.Nk = 333;
    check_tc<T>(c);
  });
  // Exactly O = 0 and LSE = -inf for rows that see nothing.
  TcCfg c;
  c.causal = true, c.Nq = 200, c.Nk = 70, c.B = 1, c.Hq = c.Hkv = 1;
  TcProblem<bfloat16> pr(c);
  TcRun<bfloat16> run(pr);
  const Outs r = run.run(flash_attention_forward_kernel(run.p), nullptr, false);
  for (int64_t i = 0; i < 130; ++i) {
    REQUIRE(r.lse[size_t(i)] == -std::numeric_limits<double>::infinity());
    for (int64_t d = 0; d < c.D; ++d) REQUIRE(r.o[size_t(i * c.D + d)] == 0.0);
  }
  REQUIRE(std::isfinite(r.lse[130]));
}

TEST_CASE("attention tc: dropout, GQA and MQA", "[cuda][attention]") {
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    TcCfg c;
    c.D = D, c.p = 0.1, c.Nq = 130, c.Nk = 97;
    check_tc<T>(c);
    c.Hq = 4, c.Hkv = 2, c.causal = true, c.p = 0.0;
    check_tc<T>(c);
    c.Hkv = 1, c.p = 0.5, c.Nq = 61, c.Nk = 190;
    check_tc<T>(c);
  });
}

TEST_CASE("attention tc: block masks", "[cuda][attention][racecheck]") {
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  for_tc_types([](auto t, int64_t D) {
    using T = decltype(t);
    TcCfg c;
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

TEST_CASE("attention tc: repeatable, and misaligned rows fall back to SIMT",
          "[cuda][attention]") {
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  TcCfg c;
  c.D = 128, c.Nq = 190, c.Nk = 250, c.causal = true, c.p = 0.2;
  TcProblem<bfloat16> pr(c);
  TcRun<bfloat16> run(pr);
  const char* fwd = flash_attention_forward_kernel(run.p);
  const char* bwd = flash_attention_backward_kernel(run.p);
  const Outs a = run.run(fwd, bwd, false), b = run.run(fwd, bwd, false);
  REQUIRE(a.o == b.o);  // no atomics in the forward: bit-identical
  REQUIRE(a.lse == b.lse);
  // The deterministic backward is bit-identical from run to run; dK and dV (no atomics in
  // either mode) are too.
  const Outs d1 = run.run(fwd, bwd, true, true), d2 = run.run(fwd, bwd, true, true);
  REQUIRE(d1.dq == d2.dq);
  REQUIRE(d1.dk == d2.dk);
  REQUIRE(d1.dv == d2.dv);
  const Outs n1 = run.run(fwd, bwd, true), n2 = run.run(fwd, bwd, true);
  REQUIRE(n1.dk == n2.dk);
  REQUIRE(n1.dv == n2.dv);

  // A seq stride that is not a multiple of 8 elements cannot use 16-byte cp.async: the
  // dispatcher must say so (and the SIMT path then computes the call).
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
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  TcCfg c;
  c.B = 1, c.Hq = c.Hkv = 1, c.Nq = 700, c.Nk = 1100, c.D = 128;
  check_tc<bfloat16>(c);
  c.causal = true, c.D = 64;
  check_tc<float16>(c);
}
namespace {

// fp32 forward on tensor cores (3xTF32): fp32-level accuracy against the double reference (plain
// TF32, with its 11-bit mantissa, would miss these bounds by orders of magnitude), the same
// masks and dropout bits as the SIMT forward, and the SIMT backward on its O and LSE.
void check_tf32x3(const TcCfg& c) {
  TcProblem<float> pr(c);
  TcRun<float> run(pr);
  INFO("f32 B=" << c.B << " Nq=" << c.Nq << " Nk=" << c.Nk << " Hq=" << c.Hq << " Hkv=" << c.Hkv
                << " D=" << c.D << " causal=" << c.causal << " p=" << c.p
                << " mask=" << !c.mask.empty());
  REQUIRE(std::string(flash_attention_forward_kernel(run.p)) == "3xtf32");
  REQUIRE(std::string(flash_attention_backward_kernel(run.p)) == "simt");
  Outs tc;
  {
    run.o.poison(), run.lse.poison(), run.dq.poison(), run.dk.poison(), run.dv.poison();
    flash_attention_forward_cuda(run.p);
    AttentionParams pb = run.p;
    DBuf<uint8_t> ws(flash_attention_backward_workspace_bytes(pb));
    pb.workspace = ws.ptr;
    flash_attention_backward_cuda(pb);
    FG_CUDA_CHECK(cudaDeviceSynchronize());
    tc.o = run.o.host_d(), tc.lse = run.lse.host_d();
    tc.dq = run.dq.host_d(), tc.dk = run.dk.host_d(), tc.dv = run.dv.host_d();
  }
  const Outs simt = run.run("simt", nullptr, /*backward=*/false);
  if (std::getenv("FG_ATTENTION_VERBOSE"))
    std::printf("tf32x3 Nq=%lld Nk=%lld D=%lld causal=%d p=%.2f: o %.2e lse %.2e (simt o %.2e) "
                "dq %.2e dk %.2e dv %.2e\n",
                (long long)c.Nq, (long long)c.Nk, (long long)c.D, int(c.causal), c.p,
                rel_l2(tc.o, pr.ro), rel_l2(tc.lse, pr.rlse), rel_l2(simt.o, pr.ro),
                rel_l2(tc.dq, pr.rdq), rel_l2(tc.dk, pr.rdk), rel_l2(tc.dv, pr.rdv));
  CHECK(rel_l2(tc.o, pr.ro) < 1e-5);
  CHECK(rel_l2(tc.lse, pr.rlse) < 1e-6);
  CHECK(rel_l2(tc.o, simt.o) < 1e-5);
  CHECK(rel_l2(tc.dv, pr.rdv) < 1e-5);
  if (c.Nk > 1) {
    CHECK(rel_l2(tc.dq, pr.rdq) < 1e-5);
    CHECK(rel_l2(tc.dk, pr.rdk) < 1e-5);
  }
}

}  // namespace

TEST_CASE("attention tc: fp32 forward (3xTF32)", "[cuda][attention][racecheck]") {
  if (!tc_gpu()) {
    WARN("no CUDA device of compute capability >= 8; skipped");
    return;
  }
  for (int64_t D : {64, 128}) {
    TcCfg c;
    c.D = D;
    check_tf32x3(c);  // 37 x 53: partial tiles
    c.Nq = 300, c.Nk = 257, c.causal = true;
    check_tf32x3(c);
    c.Nq = 200, c.Nk = 70;  // rows that see no key
    check_tf32x3(c);
    c.causal = false, c.p = 0.2, c.Hq = 4, c.Hkv = 2, c.Nq = 130, c.Nk = 97;
    check_tf32x3(c);
    c.p = 0.0, c.B = 1, c.Hq = c.Hkv = 1, c.Nq = 300, c.Nk = 330;
    c.mask = sliding_window_block_mask(c.Nq, c.Nk, 70, true);
    c.causal = true;
    check_tf32x3(c);
  }
}
#endif  // FLASHGRAD_WITH_CUDA
