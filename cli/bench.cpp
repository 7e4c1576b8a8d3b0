// `flashgrad bench attention`: TFLOP/s of the CUDA flash attention kernels (forward, backward,
// forward + backward) on the standard grid, timed with CUDA events, with a correctness check of
// every configuration against the fp64 reference so that a fast but wrong kernel cannot report
// a number.
//
//   flashgrad bench attention [--dtype bf16|fp16|fp32] [--head-dim 64,128] [--causal both|on|off]
//                             [--min-len 512] [--max-len 16384] [--reps 30] [--json FILE]
//
// Grid (flash-attn's benchmark): hidden size 2048, so H = 2048 / D heads (rounded down, as
// flash-attn's benchmark does: 21 heads at D 96); batch * N = 16384
// tokens, so B = 16384 / N; N = min-len, 2 min-len, ..., max-len; D and causal as given.
// FLOPs (flash-attn convention, counting the matrix products only): forward 4 B H N^2 D, halved
// when causal; backward 2.5x forward; forward + backward 3.5x forward.
//
// Timing: the kernels are called through flash_attention_{forward,backward}_cuda on device
// buffers allocated once (q, k, v, dO hold random normal values; every configuration has the same
// number of elements, only the shape changes). Each measurement is timed as
// bench/compare_sdpa.py times PyTorch's SDPA: after a warm-up, a few batches (--reps, 3 to 10)
// of back-to-back calls between two CUDA events with no synchronisation inside a batch, sized
// to fill --seconds together; the median over the batches of each batch's mean per call. Host
// dispatch then overlaps the GPU's work, as in a training loop, and counts only where it cannot
// keep up, for both libraries alike.
//
// Check: the last head (b = B - 1, h = H - 1) of every configuration is recomputed on the host
// by the fp64 reference of kernels/attention (cpu/reference.h) from the same rounded inputs
// (O(N^2 D) host work: a few seconds at N 16384 on 16 cores; --no-check skips it). At 16 query
// rows spread over the sequence, from the first to the last, plus the first row of the last
// 64-row tile, and at the key rows of the same indices, each row's relative error
// ||x_i - ref_i|| / ||ref_i|| is taken (against 1e-2 of the rows' median norm where a row is
// smaller, e.g. the causal dQ row 0, which is zero); the worst row of O, dQ, dK, dV must stay
// below 2e-2 (bf16/fp16) or 1e-4 (fp32), and the worst LSE error |x - ref| / max(1, |ref|)
// below 1e-4. A failure is printed and makes the command exit with status 1.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/attention/attention.h"
#include "tensor/tensor.h"

#ifdef FLASHGRAD_WITH_CUDA
#include <cuda_runtime.h>

#include "cli/bench_timing.h"
#include "core/cuda_check.h"
#endif

namespace fg::cli {

namespace {

struct BenchFlags {
  std::string dtype = "bf16";
  std::vector<int64_t> head_dims{64, 128};
  std::string causal = "both";
  int64_t min_len = 512, max_len = 16384, tokens = 16384, hidden = 2048;
  int reps = 30, warmup = 3;
  double seconds = 2.0;  // time budget per measurement, after warm-up
  double dropout = 0.0;  // attention dropout probability (seed 1234, offset 0)
  std::string json;
  bool check = true, simt = false, deterministic = false;
};

#ifdef FLASHGRAD_WITH_CUDA

struct Result {
  int64_t D, N, B, H;
  bool causal;
  std::string path;
  double fwd_ms, bwd_ms, fwdbwd_ms;
  double fwd_tflops, bwd_tflops, fwdbwd_tflops;
  double err_o, err_lse, err_dq, err_dk, err_dv;
  bool ok;
};

double to_double(uint16_t bits, DType dt) {
  if (dt == DType::bf16) {
    bfloat16 x;
    x.bits = bits;
    return double(float(x));
  }
  float16 x;
  x.bits = bits;
  return double(float(x));
}

// Host values of the inputs after rounding to the storage type, as doubles (for the reference).
struct HostData {
  std::vector<double> q, k, v, dO;
};

// Deterministic standard normal values (xorshift + Box-Muller): fast for 2^25 elements.
void fill_normal(std::vector<double>& x, size_t n, uint64_t seed) {
  x.resize(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return (double(s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  };
  for (size_t i = 0; i + 1 < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(next())), a = 6.283185307179586 * next();
    x[i] = r * std::cos(a);
    x[i + 1] = r * std::sin(a);
  }
  if (n % 2) x[n - 1] = 0.5;
}

// Rounds the doubles to the storage type, uploads them, and keeps the rounded values on the host.
void upload(std::vector<double>& x, DType dt, void* dst) {
  const size_t n = x.size();
  if (dt == DType::f32) {
    std::vector<float> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = float(x[i]), x[i] = h[i];
    FG_CUDA_CHECK(cudaMemcpy(dst, h.data(), n * 4, cudaMemcpyHostToDevice));
  } else {
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) {
      if (dt == DType::bf16) h[i] = bfloat16(float(x[i])).bits;
      else h[i] = float16(float(x[i])).bits;
      x[i] = to_double(h[i], dt);
    }
    FG_CUDA_CHECK(cudaMemcpy(dst, h.data(), n * 2, cudaMemcpyHostToDevice));
  }
}

// One head's [N, D] slab of a [B, N, H, D] device tensor, as doubles.
std::vector<double> fetch_head(const void* ptr, DType dt, int64_t B, int64_t N, int64_t H,
                               int64_t D, int64_t b, int64_t h) {
  (void)B;
  const size_t es = dt == DType::f32 ? 4 : 2;
  std::vector<unsigned char> raw(size_t(N * D) * es);
  const auto* base = static_cast<const unsigned char*>(ptr) + size_t(((b * N) * H + h) * D) * es;
  FG_CUDA_CHECK(cudaMemcpy2D(raw.data(), size_t(D) * es, base, size_t(H * D) * es, size_t(D) * es,
                             size_t(N), cudaMemcpyDeviceToHost));
  std::vector<double> out(size_t(N * D));
  for (size_t i = 0; i < out.size(); ++i) {
    if (dt == DType::f32) {
      float f;
      std::memcpy(&f, raw.data() + 4 * i, 4);
      out[i] = f;
    } else {
      uint16_t u;
      std::memcpy(&u, raw.data() + 2 * i, 2);
      out[i] = to_double(u, dt);
    }
  }
  return out;
}

// The query (and key) rows the check compares: 16 spread over [0, N), the last one included,
// and the first row of the last 64-row tile.
std::vector<int64_t> checked_rows(int64_t N) {
  std::vector<int64_t> rows;
  for (int64_t k = 0; k < 16; ++k) rows.push_back(k * (N - 1) / 15);
  rows.push_back((N - 1) / 64 * 64);
  std::sort(rows.begin(), rows.end());
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

// The worst relative error over `rows` of the [N, D] rows of x against ref. A row whose
// reference is smaller than 1e-2 of the rows' median norm is measured against that instead.
double worst_row_error(const std::vector<double>& x, const std::vector<double>& ref,
                       const std::vector<int64_t>& rows, int64_t D) {
  std::vector<double> norms;
  for (int64_t i : rows) {
    double n = 0;
    for (int64_t d = 0; d < D; ++d) n += ref[size_t(i * D + d)] * ref[size_t(i * D + d)];
    norms.push_back(std::sqrt(n));
  }
  std::vector<double> sorted = norms;
  std::sort(sorted.begin(), sorted.end());
  const double floor = 1e-2 * sorted[sorted.size() / 2];
  double worst = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    double e = 0;
    for (int64_t d = 0; d < D; ++d) {
      const double diff = x[size_t(rows[r] * D + d)] - ref[size_t(rows[r] * D + d)];
      e += std::isfinite(diff) ? diff * diff : 1e300;
    }
    worst = std::max(worst, std::sqrt(e) / std::max({norms[r], floor, 1e-300}));
  }
  return worst;
}

struct CheckErrors {
  double o = 0, lse = 0, dq = 0, dk = 0, dv = 0;
};

// The check of head (b, h) (see the file comment); p points at the device tensors.
CheckErrors check_head(const HostData& hd, const AttentionParams& p, int64_t b, int64_t h) {
  const int64_t N = p.Nq, D = p.D, H = p.Hq;
  auto slab = [&](const std::vector<double>& x) {
    std::vector<double> s(size_t(N * D));
    for (int64_t i = 0; i < N; ++i)
      for (int64_t d = 0; d < D; ++d)
        s[size_t(i * D + d)] = x[size_t(((b * N + i) * H + h) * D + d)];
    return s;
  };
  const std::vector<double> q = slab(hd.q), k = slab(hd.k), v = slab(hd.v), dO = slab(hd.dO);
  AttentionParams r;  // the one head, contiguous [1, N, 1, D]
  r.B = 1, r.Nq = r.Nk = N, r.Hq = r.Hkv = 1, r.D = D;
  set_contiguous_strides(r);
  r.dtype = DType::f64;
  r.softmax_scale = p.softmax_scale;
  r.causal = p.causal;
  // The same dropout mask: element (b, h) of the call is counter word b H + h, which the
  // one-head reference reaches through batch_index_base.
  r.dropout_p = p.dropout_p, r.seed = p.seed, r.offset = p.offset;
  r.batch_index_base = (p.batch_index_base + b) * H + h;
  std::vector<double> o(q.size()), lse(static_cast<size_t>(N)), dq(q.size()), dk(q.size()),
      dv(q.size());
  attention_reference_forward(r, q.data(), k.data(), v.data(), o.data(), lse.data());
  // D_i from the kernel's own (rounded) output, as the kernels form it: see reference.h.
  const std::vector<double> o_gpu = fetch_head(p.o, p.dtype, p.B, N, H, D, b, h);
  attention_reference_backward(r, q.data(), k.data(), v.data(), dO.data(), dq.data(), dk.data(),
                               dv.data(), {}, o_gpu.data());
  std::vector<float> gpu_lse(static_cast<size_t>(N));
  FG_CUDA_CHECK(cudaMemcpy(gpu_lse.data(), static_cast<const float*>(p.lse) + (b * H + h) * N,
                           size_t(N) * 4, cudaMemcpyDeviceToHost));
  const std::vector<int64_t> rows = checked_rows(N);
  CheckErrors e;
  e.o = worst_row_error(o_gpu, o, rows, D);
  e.dq = worst_row_error(fetch_head(p.dq, p.dtype, p.B, N, H, D, b, h), dq, rows, D);
  e.dk = worst_row_error(fetch_head(p.dk, p.dtype, p.B, N, H, D, b, h), dk, rows, D);
  e.dv = worst_row_error(fetch_head(p.dv, p.dtype, p.B, N, H, D, b, h), dv, rows, D);
  for (int64_t i : rows) {
    const double diff = std::fabs(double(gpu_lse[size_t(i)]) - lse[size_t(i)]);
    e.lse = std::max(e.lse, std::isfinite(diff) ? diff / std::max(1.0, std::fabs(lse[size_t(i)]))
                                                : 1e300);
  }
  return e;
}

// Milliseconds per call of f() (see the file comment and cli/bench_timing.h).
template <typename F> double time_ms(F&& f, const BenchFlags& fl, EventTimer& timer) {
  return cli::time_ms(timer, f, std::max(1, fl.warmup), std::max(3, std::min(fl.reps, 10)),
                      fl.seconds, 1000);
}

void run_bench(const BenchFlags& fl) {
  FG_CHECK(cuda_available(), "bench attention: no CUDA device found; this benchmark needs a GPU");
  FG_CHECK(std::isfinite(fl.seconds) && fl.seconds >= 0, "bench attention: --seconds ",
           fl.seconds, " must be a finite time budget >= 0");
  FG_CHECK(fl.dropout >= 0 && fl.dropout < 1, "bench attention: --dropout ", fl.dropout,
           " must be a probability in [0, 1)");
  const DType dt = fl.dtype == "bf16" ? DType::bf16 : fl.dtype == "fp16" ? DType::f16 : DType::f32;
  if (fl.simt) setenv("FLASHGRAD_ATTENTION_SIMT", "1", 1);
  FG_CHECK(fl.min_len > 0 && fl.min_len <= fl.max_len && fl.tokens % fl.max_len == 0,
           "bench attention: need 0 < --min-len <= --max-len and --tokens a multiple of "
           "--max-len (got ", fl.min_len, ", ", fl.max_len, ", ", fl.tokens, ")");
  for (int64_t D : fl.head_dims)
    FG_CHECK(attention_cuda_supports_head_dim(D, dt) && D <= fl.hidden,
             "bench attention: head dim ", D, " must be one the CUDA kernels take (",
             attention_cuda_head_dims(), ") and at most --hidden ", fl.hidden);
  std::vector<bool> causals;
  if (fl.causal != "on") causals.push_back(false);
  if (fl.causal != "off") causals.push_back(true);

  cudaDeviceProp prop;
  int dev = 0;
  FG_CUDA_CHECK(cudaGetDevice(&dev));
  FG_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));

  // Every configuration has tokens * hidden elements per tensor: allocate once.
  const int64_t n = fl.tokens * fl.hidden;
  const TensorOptions opt = TensorOptions(dt).device(Device::cuda(0));
  Tensor q = empty({n}, opt), k = empty({n}, opt), v = empty({n}, opt), dO = empty({n}, opt);
  Tensor o = empty({n}, opt), dq = empty({n}, opt), dk = empty({n}, opt), dv = empty({n}, opt);
  const int64_t max_heads = fl.hidden / *std::min_element(fl.head_dims.begin(), fl.head_dims.end());
  Tensor lse = empty({fl.tokens * max_heads}, TensorOptions(DType::f32).device(Device::cuda(0)));
  HostData hd;
  fill_normal(hd.q, size_t(n), 1), fill_normal(hd.k, size_t(n), 2);
  fill_normal(hd.v, size_t(n), 3), fill_normal(hd.dO, size_t(n), 4);
  upload(hd.q, dt, q.data_ptr()), upload(hd.k, dt, k.data_ptr());
  upload(hd.v, dt, v.data_ptr()), upload(hd.dO, dt, dO.data_ptr());

  EventTimer timer;
  const double tol = dt == DType::f32 ? 1e-4 : 2e-2, lse_tol = 1e-4;
  std::vector<Result> results;
  bool all_ok = true;

  std::printf("flashgrad bench attention: %s, %s, hidden %lld, %lld tokens per batch, dropout %g\n",
              prop.name, dtype_name(dt), (long long)fl.hidden, (long long)fl.tokens, fl.dropout);
  std::printf("%4s %6s %6s %3s %3s %12s | %9s %9s %9s | %7s %7s %7s | %s\n", "D", "causal", "N", "B",
              "H", "path", "fwd ms", "bwd ms", "f+b ms", "fwd TF", "bwd TF", "f+b TF", "check");
  for (int64_t D : fl.head_dims)
    for (bool causal : causals)
      for (int64_t N = fl.min_len; N <= fl.max_len; N *= 2) {
        if (fl.tokens % N) continue;
        AttentionParams p;
        p.B = fl.tokens / N, p.Nq = p.Nk = N, p.Hq = p.Hkv = fl.hidden / D, p.D = D;
        set_contiguous_strides(p);
        p.dtype = dt;
        p.softmax_scale = 1.0 / std::sqrt(double(D));
        p.causal = causal;
        p.deterministic = fl.deterministic;
        p.dropout_p = fl.dropout, p.seed = 1234, p.offset = 0;
        p.q = q.data_ptr(), p.k = k.data_ptr(), p.v = v.data_ptr(), p.do_ = dO.data_ptr();
        p.o = o.data_ptr(), p.lse = lse.data_ptr();
        p.dq = dq.data_ptr(), p.dk = dk.data_ptr(), p.dv = dv.data_ptr();
        Tensor ws = empty({int64_t(flash_attention_backward_workspace_bytes(p) + 3) / 4},
                          TensorOptions(DType::i32).device(Device::cuda(0)));
        p.workspace = ws.data_ptr();
        // Poison the outputs so that the check sees any element the kernels did not write.
        for (const Tensor* t : {&o, &dq, &dk, &dv})
          FG_CUDA_CHECK(cudaMemset(t->data_ptr(), 0xFF, size_t(n) * (dt == DType::f32 ? 4 : 2)));
        FG_CUDA_CHECK(cudaMemset(lse.data_ptr(), 0xFF, size_t(fl.tokens * max_heads) * 4));

        Result r{};
        r.D = D, r.N = N, r.B = p.B, r.H = p.Hq, r.causal = causal;
        // Kernels taken, forward/backward, as the dispatch tables name them: wgmma, mma
        // (mma.sync), 3xtf32 (fp32 on tensor cores) or simt.
        r.path = std::string(flash_attention_forward_kernel(p)) + "/" +
                 flash_attention_backward_kernel(p);
        r.fwd_ms = time_ms([&] { flash_attention_forward_cuda(p); }, fl, timer);
        r.bwd_ms = time_ms([&] { flash_attention_backward_cuda(p); }, fl, timer);
        r.fwdbwd_ms = time_ms([&] {
          flash_attention_forward_cuda(p);
          flash_attention_backward_cuda(p);
        }, fl, timer);
        FG_CUDA_CHECK(cudaDeviceSynchronize());
        const double fwd_flop = 4.0 * double(p.B) * double(p.Hq) * double(N) * double(N) *
                                double(D) * (causal ? 0.5 : 1.0);
        r.fwd_tflops = fwd_flop / (r.fwd_ms * 1e-3) / 1e12;
        r.bwd_tflops = 2.5 * fwd_flop / (r.bwd_ms * 1e-3) / 1e12;
        r.fwdbwd_tflops = 3.5 * fwd_flop / (r.fwdbwd_ms * 1e-3) / 1e12;
        r.ok = true;
        if (fl.check) {
          const CheckErrors e = check_head(hd, p, p.B - 1, p.Hq - 1);
          r.err_o = e.o, r.err_lse = e.lse, r.err_dq = e.dq, r.err_dk = e.dk, r.err_dv = e.dv;
          const double worst = std::max({r.err_o, r.err_dq, r.err_dk, r.err_dv});
          r.ok = worst < tol && r.err_lse < lse_tol;  // NaN compares false: fails
        }
        all_ok = all_ok && r.ok;
        char check[128];
        if (fl.check)
          std::snprintf(check, sizeof check, "%s (o %.1e lse %.1e dq %.1e dk %.1e dv %.1e)",
                        r.ok ? "ok" : "FAIL", r.err_o, r.err_lse, r.err_dq, r.err_dk, r.err_dv);
        else
          std::snprintf(check, sizeof check, "skipped");
        std::printf("%4lld %6s %6lld %3lld %3lld %12s | %9.3f %9.3f %9.3f | %7.1f %7.1f %7.1f | %s\n",
                    (long long)D, causal ? "yes" : "no", (long long)N, (long long)p.B,
                    (long long)p.Hq, r.path.c_str(), r.fwd_ms, r.bwd_ms, r.fwdbwd_ms, r.fwd_tflops,
                    r.bwd_tflops, r.fwdbwd_tflops, check);
        std::fflush(stdout);
        results.push_back(r);
      }

  if (!fl.json.empty()) {
    nlohmann::json j;
    j["device"] = prop.name;
    j["dtype"] = fl.dtype;
    j["hidden"] = fl.hidden;
    j["tokens"] = fl.tokens;
    j["flop_convention"] = "fwd 4*B*H*N^2*D (x0.5 causal), bwd 2.5x, fwd+bwd 3.5x";
    j["deterministic"] = fl.deterministic;
    j["dropout"] = fl.dropout;
    for (const Result& r : results)
      j["results"].push_back({{"D", r.D}, {"causal", r.causal}, {"N", r.N}, {"B", r.B},
                              {"H", r.H}, {"path", r.path}, {"fwd_ms", r.fwd_ms},
                              {"bwd_ms", r.bwd_ms}, {"fwdbwd_ms", r.fwdbwd_ms},
                              {"fwd_tflops", r.fwd_tflops}, {"bwd_tflops", r.bwd_tflops},
                              {"fwdbwd_tflops", r.fwdbwd_tflops}, {"check_ok", r.ok},
                              {"err_o", r.err_o}, {"err_lse", r.err_lse}, {"err_dq", r.err_dq},
                              {"err_dk", r.err_dk}, {"err_dv", r.err_dv}});
    std::ofstream out(fl.json);
    FG_CHECK(out.good(), "bench attention: cannot write --json file '", fl.json, "'");
    out << j.dump(2) << "\n";
  }
  if (!all_ok) {
    std::printf("bench attention: some configurations FAILED the check against the fp64 "
                "reference (worst row %.0e, LSE %.0e)\n", tol, lse_tol);
    throw Exit{1};
  }
}

#else

void run_bench(const BenchFlags&) {
  throw Error("bench attention: flashgrad was built without CUDA; the benchmark needs a GPU build");
}

#endif  // FLASHGRAD_WITH_CUDA

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "benchmarks");
  bench->require_subcommand(1);
  auto flags = std::make_shared<BenchFlags>();
  BenchFlags& f = *flags;
  register_bench_decode(*bench);
  register_bench_decode_attention(*bench);
  register_bench_train(*bench);
  register_bench_ops(*bench);
  CLI::App* cmd = bench->add_subcommand(
      "attention", "TFLOP/s of the CUDA flash attention forward/backward on the standard grid");
  cmd->add_option("--dtype", f.dtype, "bf16, fp16 or fp32")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}))->capture_default_str();
  cmd->add_option("--head-dim", f.head_dims, "head dims (comma separated: 64,128)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--causal", f.causal, "both, on or off")
      ->check(CLI::IsMember({"both", "on", "off"}))->capture_default_str();
  cmd->add_option("--min-len", f.min_len, "shortest sequence length")->capture_default_str();
  cmd->add_option("--max-len", f.max_len, "longest sequence length (powers of 2 in between)")
      ->capture_default_str();
  cmd->add_option("--tokens", f.tokens, "batch * N, fixed over the grid")->capture_default_str();
  cmd->add_option("--hidden", f.hidden, "the width: H = hidden / D heads (rounded down)")
      ->capture_default_str();
  cmd->add_option("--reps", f.reps, "timed batches per measurement (at most; 3 to 10)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--warmup", f.warmup, "untimed runs first")->capture_default_str();
  cmd->add_option("--seconds", f.seconds, "time budget per measurement (sizes the batches)")
      ->capture_default_str();
  cmd->add_option("--json", f.json, "also write the results to this JSON file");
  cmd->add_flag("!--no-check", f.check, "skip the check against the fp64 reference");
  cmd->add_flag("--simt", f.simt, "force the SIMT kernels (sets FLASHGRAD_ATTENTION_SIMT=1)");
  cmd->add_flag("--deterministic", f.deterministic, "deterministic backward (no dQ atomics)");
  cmd->add_option("--dropout", f.dropout, "attention dropout probability (seed 1234)")
      ->capture_default_str();
  cmd->callback([flags] { run_bench(*flags); });
}

}  // namespace fg::cli
