// What the attention kernel tests share (test_attention_kernels.cpp, test_attention_tc.cpp):
// random problems in either input layout, the fp64 reference of the library on them
// (kernels/attention/cpu/reference.h), the error bounds of each path and dtype, and the line
// every comparison prints; in CUDA builds also the device problem and the sweep that runs every
// usable kernel of the dispatch tables, by name, against the reference.
//
// Errors are relative L2 norms, ||x - ref|| / ||ref||, over the whole tensor. Each comparison
// prints one line to stdout,
//   measured <path> <dtype> <quantity> rel_l2 <value> bound <value> | <case>
// so that the errors of a GPU run can be read back from its log and the bounds set from them:
//   grep '^measured' log | awk '{k=$2" "$3" "$4; if ($6 > m[k]) m[k] = $6} END {for (k in m)
//   print k, m[k]}' | sort
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/attention/attention.h"

#ifdef FLASHGRAD_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

namespace fg::attention_test {

template <typename T> double to_d(T x) {
  if constexpr (std::is_same_v<T, double>) return x;
  else return double(float(x));
}
template <typename T> T from_d(double x) {
  if constexpr (std::is_same_v<T, double>) return x;
  else return T(float(x));
}
// The LSE element type of a dtype (params.h): fp64 for f64, fp32 otherwise.
template <typename T> using LseT = std::conditional_t<std::is_same_v<T, double>, double, float>;

// How q, k, v reach the kernels: three contiguous tensors, or the q/k/v slices of one fused
// [B, N, 3, H, D] projection (as the GPT feeds them: seq stride 3 H D, head stride D), with
// dq, dk, dv written into a fused buffer of the same shape. O, LSE and dO are contiguous.
enum class Layout { contiguous, fused_qkv };

struct Case {
  int64_t B = 2, Nq = 37, Nk = 53, Hq = 2, Hkv = 2, D = 32;
  bool causal = false;
  double p = 0.0;             // dropout
  std::vector<uint8_t> mask;  // block mask bits (host); empty: none
  int64_t mask_heads = 1;
  uint64_t seed = 1234, offset = 7;
  Layout layout = Layout::contiguous;
};

inline std::string describe(const Case& c) {
  std::ostringstream s;
  s << "B=" << c.B << " Nq=" << c.Nq << " Nk=" << c.Nk << " Hq=" << c.Hq << " Hkv=" << c.Hkv
    << " D=" << c.D << " causal=" << c.causal << " p=" << c.p
    << " mask=" << (c.mask.empty() ? 0 : c.mask_heads)
    << " layout=" << (c.layout == Layout::fused_qkv ? "fused" : "contiguous");
  return s.str();
}

// ---------------------------------------------------------------------------------------------
// Layouts

// Element strides of a [B, N, H, D] tensor over (batch, seq, head); the last one is 1.
struct Strides {
  int64_t batch, seq, head;
};

// Where q, k, v sit in one input buffer (dq, dk, dv in a gradient buffer of the same shape).
struct Placement {
  size_t size = 0;             // elements of the buffer
  size_t q = 0, k = 0, v = 0;  // element offsets
  int64_t q_batch = 0, q_seq = 0, q_head = 0;     // strides of q and dq
  int64_t kv_batch = 0, kv_seq = 0, kv_head = 0;  // of k, v, dk, dv
  Strides q_strides() const { return {q_batch, q_seq, q_head}; }
  Strides kv_strides() const { return {kv_batch, kv_seq, kv_head}; }
};

inline Placement placement(const Case& c, Layout layout) {
  Placement pl;
  if (layout == Layout::fused_qkv) {
    REQUIRE(c.Nq == c.Nk);
    REQUIRE(c.Hq == c.Hkv);
    const int64_t HD = c.Hq * c.D;
    pl.size = size_t(c.B * c.Nq * 3 * HD);
    pl.q = 0, pl.k = size_t(HD), pl.v = size_t(2 * HD);
    pl.q_batch = pl.kv_batch = c.Nq * 3 * HD;
    pl.q_seq = pl.kv_seq = 3 * HD;
    pl.q_head = pl.kv_head = c.D;
    return pl;
  }
  // Each tensor starts at a multiple of 64 elements (the tensor-core kernels want 16 bytes).
  auto round_up = [](size_t n) { return (n + 63) / 64 * 64; };
  const size_t nq = size_t(c.B * c.Nq * c.Hq * c.D), nk = size_t(c.B * c.Nk * c.Hkv * c.D);
  pl.q = 0, pl.k = round_up(nq), pl.v = pl.k + round_up(nk);
  pl.size = pl.v + nk;
  pl.q_batch = c.Nq * c.Hq * c.D, pl.q_seq = c.Hq * c.D, pl.q_head = c.D;
  pl.kv_batch = c.Nk * c.Hkv * c.D, pl.kv_seq = c.Hkv * c.D, pl.kv_head = c.D;
  return pl;
}

// Points q, k, v of p into `in` and dq, dk, dv into `grad` (buffers laid out by pl, host or
// device) and sets their strides.
template <typename T> void place(AttentionParams& p, const Placement& pl, T* in, T* grad) {
  p.q = in + pl.q, p.k = in + pl.k, p.v = in + pl.v;
  p.dq = grad + pl.q, p.dk = grad + pl.k, p.dv = grad + pl.v;
  p.q_batch_stride = p.dq_batch_stride = pl.q_batch;
  p.q_seq_stride = p.dq_seq_stride = pl.q_seq;
  p.q_head_stride = p.dq_head_stride = pl.q_head;
  p.k_batch_stride = p.v_batch_stride = p.dk_batch_stride = p.dv_batch_stride = pl.kv_batch;
  p.k_seq_stride = p.v_seq_stride = p.dk_seq_stride = p.dv_seq_stride = pl.kv_seq;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = pl.kv_head;
}

// A dense [B, N, H, D] tensor written into / read out of a strided one at `base`.
template <typename T>
void scatter(const std::vector<T>& dense, T* base, Strides s, int64_t B, int64_t N, int64_t H,
             int64_t D) {
  size_t e = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) base[b * s.batch + n * s.seq + h * s.head + d] = dense[e++];
}
template <typename T>
std::vector<double> gather(const T* base, Strides s, int64_t B, int64_t N, int64_t H, int64_t D) {
  std::vector<double> dense;
  dense.reserve(size_t(B * N * H * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d)
          dense.push_back(to_d(base[b * s.batch + n * s.seq + h * s.head + d]));
  return dense;
}
template <typename T> std::vector<double> widen(const std::vector<T>& x) {
  std::vector<double> d(x.size());
  for (size_t e = 0; e < x.size(); ++e) d[e] = to_d(x[e]);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Problems and their reference

// Dense values of O [B, Nq, Hq, D], LSE [B, Hq, Nq], dQ like O, dK and dV [B, Nk, Hkv, D].
struct Values {
  std::vector<double> o, lse, dq, dk, dv;
};

// One random problem: dense inputs in the storage type (fresh normal values per case) and the
// fp64 reference on those rounded values.
template <typename T> struct Problem {
  Case c;
  AttentionParams p;  // sizes and options, contiguous strides, host block mask; no tensors
  std::vector<T> q, k, v, dO;
  Values ref;

  explicit Problem(const Case& cfg) : c(cfg) {
    p.B = c.B, p.Nq = c.Nq, p.Nk = c.Nk, p.Hq = c.Hq, p.Hkv = c.Hkv, p.D = c.D;
    set_contiguous_strides(p);
    p.dtype = dtype_of<T>::value;
    p.softmax_scale = 1.0 / std::sqrt(double(c.D));
    p.causal = c.causal;
    p.dropout_p = c.p;
    p.seed = c.seed, p.offset = c.offset;
    p.block_mask = c.mask.empty() ? nullptr : c.mask.data();
    p.block_mask_heads = c.mask_heads;
    std::mt19937_64 gen(c.seed * 7919 + uint64_t(c.Nq * 1000003 + c.Nk * 131 + c.D * 31 + c.Hq) +
                        uint64_t(c.layout == Layout::fused_qkv));
    std::normal_distribution<double> nd(0.0, 1.0);
    auto fill = [&](std::vector<T>& x, int64_t n) {
      x.resize(size_t(n));
      for (auto& e : x) e = from_d<T>(nd(gen));
    };
    fill(q, c.B * c.Nq * c.Hq * c.D), fill(k, c.B * c.Nk * c.Hkv * c.D);
    fill(v, c.B * c.Nk * c.Hkv * c.D), fill(dO, c.B * c.Nq * c.Hq * c.D);
    const std::vector<double> qd = widen(q), kd = widen(k), vd = widen(v), dod = widen(dO);
    ref.o.assign(q.size(), 0), ref.dq.assign(q.size(), 0), ref.dk.assign(k.size(), 0);
    ref.dv.assign(k.size(), 0), ref.lse.assign(size_t(c.B * c.Hq * c.Nq), 0);
    attention_reference_forward(p, qd.data(), kd.data(), vd.data(), ref.o.data(), ref.lse.data());
    attention_reference_backward(p, qd.data(), kd.data(), vd.data(), dod.data(), ref.dq.data(),
                                 ref.dk.data(), ref.dv.data());
  }
  Problem(const Problem&) = delete;  // p.block_mask points into c
  Problem& operator=(const Problem&) = delete;

  // The reference O rounded to the storage type, and its LSE in the LSE type: what a correct
  // forward hands the backward.
  std::vector<T> ref_o() const {
    std::vector<T> o(ref.o.size());
    for (size_t e = 0; e < o.size(); ++e) o[e] = from_d<T>(ref.o[e]);
    return o;
  }
  std::vector<LseT<T>> ref_lse() const { return {ref.lse.begin(), ref.lse.end()}; }

  // q, k, v written into an input buffer laid out by pl; dq, dk, dv read out of a gradient
  // buffer laid out by pl.
  void scatter_inputs(T* buffer, const Placement& pl) const {
    scatter(q, buffer + pl.q, pl.q_strides(), c.B, c.Nq, c.Hq, c.D);
    scatter(k, buffer + pl.k, pl.kv_strides(), c.B, c.Nk, c.Hkv, c.D);
    scatter(v, buffer + pl.v, pl.kv_strides(), c.B, c.Nk, c.Hkv, c.D);
  }
  Values gather_grads(const T* buffer, const Placement& pl) const {
    Values r;
    r.dq = gather(buffer + pl.q, pl.q_strides(), c.B, c.Nq, c.Hq, c.D);
    r.dk = gather(buffer + pl.k, pl.kv_strides(), c.B, c.Nk, c.Hkv, c.D);
    r.dv = gather(buffer + pl.v, pl.kv_strides(), c.B, c.Nk, c.Hkv, c.D);
    return r;
  }
};

// Problem `pr` in host buffers laid out by `layout`, outputs poisoned (NaN); p points at them
// as the CPU entry points take them.
template <typename T> struct HostRun {
  const Problem<T>& pr;
  Placement pl;
  std::vector<T> in, grad, o, dO;
  std::vector<LseT<T>> lse;
  AttentionParams p;

  HostRun(const Problem<T>& problem, Layout layout)
      : pr(problem), pl(placement(pr.c, layout)),
        in(pl.size, from_d<T>(std::numeric_limits<double>::quiet_NaN())), grad(in),
        o(pr.q.size(), in[0]), dO(pr.dO),
        lse(pr.ref.lse.size(), LseT<T>(std::numeric_limits<double>::quiet_NaN())) {
    pr.scatter_inputs(in.data(), pl);
    p = pr.p;
    place(p, pl, in.data(), grad.data());
    p.o = o.data(), p.lse = lse.data(), p.do_ = dO.data();
  }
  // The CPU flash forward, then the backward on its O and LSE; returns the dense results.
  Values run() {
    flash_attention_forward_cpu(p);
    flash_attention_backward_cpu(p);
    Values r = pr.gather_grads(grad.data(), pl);
    r.o = widen(o), r.lse = widen(lse);
    return r;
  }
};

// ---------------------------------------------------------------------------------------------
// Errors and bounds

inline double norm(const std::vector<double>& x) {
  double s = 0;
  for (double e : x)
    if (std::isfinite(e)) s += e * e;
  return std::sqrt(s);
}

// ||a - r|| / scale, scale = ||r|| unless given. Where r is infinite (the LSE of a row that
// sees no key) a must equal it exactly; any other non-finite a gives infinity.
inline double rel_l2(const std::vector<double>& a, const std::vector<double>& r,
                     double scale = -1) {
  REQUIRE(a.size() == r.size());
  double num = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isinf(r[i])) {
      if (a[i] != r[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    num += (a[i] - r[i]) * (a[i] - r[i]);
  }
  if (scale < 0) scale = norm(r);
  if (scale == 0) return num == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num) / scale;
}

// Relative errors of a run against the reference; negative where not measured. A gradient
// that is exactly zero in the reference (dQ and dK when every row sees one key: P = 1, dS = 0)
// is measured against the size of dV instead.
struct Errors {
  double o = -1, lse = -1, dq = -1, dk = -1, dv = -1;
};
// An error of the LSE is an absolute error of log P, so its scale is at least 1 per row (a
// one-key row's LSE is one score, which can be near 0).
inline Errors forward_errors(const Values& x, const Values& ref) {
  Errors e;
  e.o = rel_l2(x.o, ref.o);
  size_t rows = 0;
  for (double l : ref.lse) rows += std::isfinite(l) ? 1 : 0;
  e.lse = rel_l2(x.lse, ref.lse, std::max(norm(ref.lse), std::sqrt(double(rows))));
  return e;
}
inline Errors backward_errors(const Values& x, const Values& ref) {
  Errors e;
  const double dv = norm(ref.dv);
  auto grad = [&](const std::vector<double>& a, const std::vector<double>& r) {
    const double n = norm(r);
    return rel_l2(a, r, n > 0 ? n : dv);
  };
  e.dq = grad(x.dq, ref.dq), e.dk = grad(x.dk, ref.dk), e.dv = grad(x.dv, ref.dv);
  return e;
}
inline Errors all_errors(const Values& x, const Values& ref) {
  Errors e = backward_errors(x, ref);
  const Errors f = forward_errors(x, ref);
  e.o = f.o, e.lse = f.lse;
  return e;
}

// Bounds on the relative L2 errors of one path in one dtype: O, LSE, and dQ, dK, dV.
struct Bounds {
  double o, lse, grad;
};

// The CPU flash path against the reference: 3x the largest error measured over the CPU cases
// of test_attention_kernels.cpp (GCC 12, x86-64), rounded up:
//   f64   O 7.1e-16  LSE 5.5e-17  dQ/dK/dV 5.9e-16
//   f32   O 4.8e-7   LSE 1.2e-7   dQ/dK/dV 6.3e-7
//   bf16  O 1.7e-3   LSE 5.1e-8   dQ/dK/dV 2.2e-3   (the rounding of the 16-bit outputs)
//   f16   O 2.1e-4   LSE 5.1e-8   dQ/dK/dV 3.3e-4
// The LSE is fp32 arithmetic for every dtype but f64, so it has one bound, 3x the worst fp32
// case (1.2e-7: the 1 x 1 problem, one dot product): an LSE stored in a 16-bit type is off by
// about 1e-3 and fails at once.
inline Bounds cpu_bounds(DType t) {
  switch (t) {
    case DType::f64: return {2.1e-15, 1.7e-16, 1.8e-15};
    case DType::f32: return {1.4e-6, 3.5e-7, 1.9e-6};
    case DType::bf16: return {5.1e-3, 3.5e-7, 6.5e-3};
    case DType::f16: return {6.4e-4, 3.5e-7, 1e-3};
    default: FAIL("no attention error bounds for dtype " << dtype_name(t)); return {0, 0, 0};
  }
}

// Prints the measured line of each quantity of e and checks it against b.
inline void check_errors(const std::string& path, DType t, const Case& c, const Errors& e,
                         const Bounds& b) {
  const std::string where = describe(c);
  auto one = [&](const char* quantity, double err, double bound) {
    if (err < 0) return;
    std::printf("measured %s %s %s rel_l2 %.3e bound %.1e | %s\n", path.c_str(), dtype_name(t),
                quantity, err, bound, where.c_str());
    INFO(path << " " << dtype_name(t) << " " << quantity << " rel_l2 " << err << " bound "
              << bound << " | " << where);
    CHECK(err < bound);  // NaN fails
  };
  one("o", e.o, b.o);
  one("lse", e.lse, b.lse);
  one("dq", e.dq, b.grad);
  one("dk", e.dk, b.grad);
  one("dv", e.dv, b.grad);
  std::fflush(stdout);
}

template <typename T> void check_cpu(const Case& c) {
  Problem<T> pr(c);
  check_errors("cpu", pr.p.dtype, c, all_errors(HostRun<T>(pr, c.layout).run(), pr.ref),
               cpu_bounds(pr.p.dtype));
}

template <typename F> void for_all_dtypes(F f) {
  f(float{});
  f(double{});
  f(bfloat16{});
  f(float16{});
}

// ---------------------------------------------------------------------------------------------
// CUDA

#ifdef FLASHGRAD_WITH_CUDA

// The [cuda] tests run on the GPU machine only (ctest label `cuda`): without a usable device
// they fail, so that a machine without one never reports them as passed.
inline void require_cuda_device(int min_major = 0) {
  int n = 0, major = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaSuccess && n > 0)
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  INFO("the [cuda] attention tests need a CUDA device"
       << (min_major > 0 ? " of compute capability >= " + std::to_string(min_major) : "")
       << " (found " << n << " device(s), "
       << (err == cudaSuccess ? "no error" : cudaGetErrorString(err)) << ", major " << major
       << "); run them on the GPU machine, or run the cpu tests only (ctest -L cpu)");
  REQUIRE((err == cudaSuccess && n > 0 && major >= min_major));
}

inline int device_major() {
  int major = 0;
  FG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  return major;
}

template <typename T> struct DeviceBuffer {
  T* ptr = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    FG_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(1, n) * sizeof(T)));
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& h) : DeviceBuffer(h.size()) { upload(h); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void poison() { FG_CUDA_CHECK(cudaMemset(ptr, 0xFF, n * sizeof(T))); }  // NaN in every float
  void upload(const std::vector<T>& h) {
    REQUIRE(h.size() == n);
    FG_CUDA_CHECK(cudaMemcpy(ptr, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> host() const {
    std::vector<T> h(n);
    FG_CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

// Problem `pr` on the GPU in its layout: inputs uploaded once, outputs poisoned (NaN) before
// every run so that an element a kernel does not write fails the comparison.
template <typename T> struct DeviceProblem {
  const Problem<T>& pr;
  Placement pl;
  DeviceBuffer<T> in, grad, o, dO;
  DeviceBuffer<LseT<T>> lse;
  DeviceBuffer<uint8_t> mask;
  AttentionParams p;  // device pointers

  explicit DeviceProblem(const Problem<T>& problem)
      : pr(problem), pl(placement(pr.c, pr.c.layout)), in(pl.size), grad(pl.size), o(pr.q.size()),
        dO(pr.dO), lse(pr.ref.lse.size()),
        mask(pr.c.mask.empty() ? std::vector<uint8_t>{0} : pr.c.mask) {
    std::vector<T> h = in.host();  // NaN between the tensors of the contiguous layout
    pr.scatter_inputs(h.data(), pl);
    in.upload(h);
    p = pr.p;
    place(p, pl, in.ptr, grad.ptr);
    p.o = o.ptr, p.lse = lse.ptr, p.do_ = dO.ptr;
    p.block_mask = pr.c.mask.empty() ? nullptr : mask.ptr;
  }

  // O and LSE from forward kernel `kernel` (by its name in the table), given the split-KV
  // workspace the node would give it (`split`: the decode kernel then divides the keys).
  Values forward(const char* kernel, bool split = true) {
    o.poison(), lse.poison();
    AttentionParams pf = p;
    DeviceBuffer<uint8_t> ws(split ? flash_attention_forward_workspace_bytes(pf) : 0);
    pf.split_workspace = ws.n ? ws.ptr : nullptr;
    flash_attention_forward_cuda_with(kernel, pf);
    FG_CUDA_CHECK(cudaDeviceSynchronize());
    Values r;
    r.o = widen(o.host()), r.lse = widen(lse.host());
    return r;
  }
  // Makes the reference's O (rounded to T) and LSE the backward's inputs, so that a backward
  // kernel is measured on its own, whichever forward would have run.
  void use_reference_forward() { o.upload(pr.ref_o()), lse.upload(pr.ref_lse()); }
  // dQ, dK, dV from backward kernel `kernel` on the O and LSE in place; the raw gradient
  // buffer too, for bitwise comparisons.
  Values backward(const char* kernel, bool deterministic, std::vector<T>* raw = nullptr) {
    grad.poison();
    AttentionParams pb = p;
    pb.deterministic = deterministic;
    DeviceBuffer<uint8_t> ws(flash_attention_backward_workspace_bytes(pb));
    pb.workspace = ws.ptr;
    flash_attention_backward_cuda_with(kernel, pb);
    FG_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<T> g = grad.host();
    if (raw) *raw = g;
    return pr.gather_grads(g.data(), pl);
  }
};

// Bounds of the CUDA kernels: about 3x the worst error each kernel showed over the [cuda]
// cases of the attention tests (the "measured" lines, worst per kernel, dtype and quantity;
// H200, sm_90a, 2026-11-28, commit 1c30dfc; bench/RESULTS.md has the run). Worst measured:
//   forward   O                                  LSE
//     simt    f64 8.7e-16 f32 4.6e-7 bf16 1.7e-3 f16 2.1e-4   all below 8.4e-8 (f64 1.1e-16)
//     mma     bf16 2.4e-3 f16 3.0e-4                           1.1e-7
//     wgmma   bf16 2.4e-3 f16 3.0e-4                           1.1e-7
//     3xtf32  f32 2.0e-6                                       2.0e-7
//   backward  dQ, dK, dV
//     simt    f64 8.8e-16 f32 1.3e-6 (on the 3xTF32 forward's O and LSE; 6.2e-7 on exact
//             ones) bf16 2.2e-3 f16 3.0e-4
//     mma     bf16 2.7e-3 f16 3.6e-4
//     wgmma   bf16 2.9e-3 f16 3.8e-4
// The 16-bit kernels round P and dS to 16 bits for the tensor-core products, hence their
// larger errors than the SIMT kernel's. Every LSE is fp32 arithmetic (f64 for f64): all its
// bounds are under 1e-6, and an LSE stored in a 16-bit type (off by about 1e-3) fails at once.
inline Bounds cuda_forward_bounds(const std::string& kernel, DType t) {
  const bool tc16 = kernel == "mma" || kernel == "wgmma" || kernel == "tma";
  // The split-KV decode kernel computes in fp32 like the SIMT one: the same bounds.
  if (kernel == "simt" || (kernel == "splitkv" && t != DType::f64)) {
    switch (t) {
      case DType::f64: return {2.7e-15, 3.3e-16, 0};
      case DType::f32: return {1.4e-6, 1.4e-7, 0};
      case DType::bf16: return {5.1e-3, 1.5e-7, 0};
      case DType::f16: return {6.4e-4, 2.6e-7, 0};
      default: break;
    }
  } else if (tc16 && t == DType::bf16) {
    return {7.1e-3, 3.3e-7, 0};
  } else if (tc16 && t == DType::f16) {
    return {9e-4, 2.7e-7, 0};
  } else if (kernel == "3xtf32" && t == DType::f32) {
    return {6.1e-6, 6.1e-7, 0};
  }
  FAIL("no error bounds for the CUDA forward kernel '" << kernel << "' in " << dtype_name(t)
       << ": add them to cuda_forward_bounds in tests/kernels/attention_testing.h");
  return {0, 0, 0};
}
inline Bounds cuda_backward_bounds(const std::string& kernel, DType t) {
  if (kernel == "simt") {
    switch (t) {
      case DType::f64: return {0, 0, 2.7e-15};
      case DType::f32: return {0, 0, 4e-6};
      case DType::bf16: return {0, 0, 6.6e-3};
      case DType::f16: return {0, 0, 9e-4};
      default: break;
    }
  } else if (kernel == "mma" && (t == DType::bf16 || t == DType::f16)) {
    return {0, 0, t == DType::bf16 ? 8.3e-3 : 1.1e-3};
  } else if ((kernel == "wgmma" || kernel == "tma") && (t == DType::bf16 || t == DType::f16)) {
    // (The warp-specialised backward forms the same products; only its dQ sums run in
    // another order.)
    return {0, 0, t == DType::bf16 ? 8.7e-3 : 1.2e-3};
  }
  FAIL("no error bounds for the CUDA backward kernel '" << kernel << "' in " << dtype_name(t)
       << ": add them to cuda_backward_bounds in tests/kernels/attention_testing.h");
  return {0, 0, 0};
}

// The kernels a sweep ran, as "forward <name>" and "backward <name>".
using KernelsRun = std::set<std::string>;

// Every kernel of the two tables that can compute case c, by name, against the reference:
//   - each forward (O, LSE), and it is bit-identical run to run (no atomics in any forward);
//   - each backward on the reference's O and LSE, with dQ by atomics and deterministic, and
//     the deterministic one twice: dQ, dK, dV must be bit-identical;
//   - the default pair (the kernels flash_attention_*_cuda choose), the backward on the
//     forward's own O and LSE, as the attention node runs them.
template <typename T> KernelsRun check_every_kernel(const Problem<T>& pr) {
  const Case& c = pr.c;
  DeviceProblem<T> dev(pr);
  const DType t = pr.p.dtype;
  KernelsRun ran;
  for (const AttentionKernel& f : flash_attention_forward_kernels()) {
    if (!f.usable(dev.p, attention_current_device())) continue;
    const Values a = dev.forward(f.name);
    check_errors(std::string("cuda-forward:") + f.name, t, c, forward_errors(a, pr.ref),
                 cuda_forward_bounds(f.name, t));
    const Values b = dev.forward(f.name);
    INFO("forward " << f.name << " run twice | " << describe(c));
    CHECK(std::memcmp(a.o.data(), b.o.data(), a.o.size() * sizeof(double)) == 0);
    CHECK(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(double)) == 0);
    ran.insert(std::string("forward ") + f.name);
  }
  dev.use_reference_forward();
  for (const AttentionKernel& k : flash_attention_backward_kernels()) {
    if (!k.usable(dev.p, attention_current_device())) continue;
    const Bounds b = cuda_backward_bounds(k.name, t);
    check_errors(std::string("cuda-backward:") + k.name, t, c,
                 backward_errors(dev.backward(k.name, false), pr.ref), b);
    std::vector<T> raw1, raw2;
    check_errors(std::string("cuda-backward:") + k.name + ":deterministic", t, c,
                 backward_errors(dev.backward(k.name, true, &raw1), pr.ref), b);
    dev.backward(k.name, true, &raw2);
    INFO("deterministic backward " << k.name << " run twice | " << describe(c));
    REQUIRE(raw1.size() == raw2.size());
    CHECK(std::memcmp(raw1.data(), raw2.data(), raw1.size() * sizeof(T)) == 0);
    ran.insert(std::string("backward ") + k.name);
  }
  const std::string fwd = flash_attention_forward_kernel(dev.p);
  const std::string bwd = flash_attention_backward_kernel(dev.p);
  const Values v = dev.forward(fwd.c_str());
  Values g = dev.backward(bwd.c_str(), false);
  g.o = v.o, g.lse = v.lse;
  // The forward's error reaches the gradients through D_i = rowsum(dO * O); the backward
  // bounds above were measured on these default pairs too (the simt f32 one is set by them).
  const Bounds bf = cuda_forward_bounds(fwd, t), bb = cuda_backward_bounds(bwd, t);
  check_errors("cuda-default:" + fwd + "+" + bwd, t, c, all_errors(g, pr.ref),
               {bf.o, bf.lse, bb.grad});
  return ran;
}
template <typename T> KernelsRun check_every_kernel(const Case& c) {
  return check_every_kernel(Problem<T>(c));
}

#endif  // FLASHGRAD_WITH_CUDA

}  // namespace fg::attention_test
