// `flashgrad bench ops`: the memory bandwidth of the elementwise, normalisation, reduction and
// optimizer kernels a GPT training step runs, at that step's shapes, against a device-to-device
// copy of the same size measured in the same run.
//
//   flashgrad bench ops                      # the gpt12 shapes: 16 x 1024 tokens, width 768, bf16
//   flashgrad bench ops --tokens 8192 --n-embd 1024 --dtype fp32
//
// Each row calls one raw op (tensor/ops.h) on CUDA tensors allocated beforehand, back to back
// between two CUDA events after a warm-up (the output's allocation comes from the caching
// allocator and costs no device time); GB/s = the bytes the op must move at least (each input
// read once, each output written once) / the median per-call time of 5 batches. The last column
// is that over the copy's GB/s: what share of the bandwidth the device reaches in practice the
// kernel gets.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "cli/commands.h"
#include "core/env.h"
#include "tensor/ops.h"

#ifdef FLASHGRAD_WITH_CUDA
#include <cuda_runtime.h>

#include "cli/bench_timing.h"
#include "core/cuda_check.h"
#endif

namespace fg::cli {

namespace {

struct OpsBenchFlags {
  int64_t tokens = 16384, n_embd = 768, params = 85'000'000;
  std::string dtype = "bf16";
  int reps = 20;
};

#ifdef FLASHGRAD_WITH_CUDA

// The median over 5 batches of `reps` back-to-back calls of each batch's mean, in microseconds.
double time_us(const std::function<void()>& fn, int reps) {
  for (int i = 0; i < 3; ++i) fn();
  EventTimer timer;
  std::vector<double> us;
  for (int batch = 0; batch < 5; ++batch) us.push_back(1e3 * timer.batch_ms(fn, reps));
  return median(us);
}

void run_bench_ops(const OpsBenchFlags& f) {
  const Device dev = Device::cuda(0);
  FG_CHECK(cuda_available(), "bench ops: no CUDA device; the benchmark needs a GPU");
  const DType dt = dtype_from_string(f.dtype);
  FG_CHECK(dt == DType::bf16 || dt == DType::f32, "bench ops: --dtype must be bf16 or fp32");
  FG_CHECK(f.tokens >= 1 && f.n_embd >= 1 && f.params >= 1, "bench ops: sizes must be positive");
  const int64_t R = f.tokens, C = f.n_embd, es = int64_t(dtype_size(dt));
  auto opts = TensorOptions(dt).device(dev);
  Tensor x = randn({R, C}, opts), y = randn({R, C}, opts), h = randn({R, 4 * C}, opts);
  Tensor gh = randn({R, 4 * C}, opts), bias = randn({4 * C}, opts), w = randn({C}, opts);
  Tensor bw = randn({C}, opts);
  Tensor xf = randn({R, C}, TensorOptions(DType::f32).device(dev));
  ops::LayerNormResult ln = ops::layer_norm(x, w, bw, 1e-5);
  // A GPT's parameters for the optimizer rows: 12 layers' worth of tensors of these sizes.
  std::vector<Tensor> grads;
  std::vector<ops::AdamWSlot> slots;
  int64_t total = 0;
  for (int64_t n : {3 * C * C, 3 * C, C * C, C, 4 * C * C, 4 * C, 4 * C * C, C, C, C, C, C}) {
    if (total >= f.params) break;
    for (int rep = 0; rep < 12 && total < f.params; ++rep) {
      Tensor p = randn({n}, opts), g = randn({n}, opts);
      auto f32 = TensorOptions(DType::f32).device(dev);
      slots.push_back({p, dt == DType::f32 ? Tensor() : ops::to_dtype(p, DType::f32), g,
                       zeros({n}, f32), zeros({n}, f32)});
      grads.push_back(g);
      total += n;
    }
  }
  const AdamWArgs args = AdamWArgs::make(1e-4, 0.9, 0.99, 1e-8, 0.1, 10);
  const double rc = double(R * C), rh = double(R * 4 * C);
  struct Row {
    const char* name;
    std::string shape;
    double bytes;
    std::function<void()> fn;
  };
  const std::string s_rc = str("[", R, ", ", C, "]"), s_rh = str("[", R, ", ", 4 * C, "]");
  std::vector<Row> rows = {
      {"copy (device to device)", s_rc, 2 * rc * es, [&] { ops::clone(x); }},
      {"add (residual)", s_rc, 3 * rc * es, [&] { ops::add(x, y); }},
      {"add bias (row broadcast)", s_rh, 2 * rh * es, [&] { ops::add(h, bias); }},
      {"mul by scalar", s_rc, 2 * rc * es, [&] { ops::mul_scalar(x, 0.5); }},
      {"gelu", s_rh, 2 * rh * es, [&] { ops::unary(UnaryOp::gelu, h); }},
      {"gelu backward", s_rh, 3 * rh * es, [&] { ops::binary(BinaryOp::gelu_backward, gh, h); }},
      {"dropout", s_rc, 2 * rc * es, [&] { ops::dropout(x, 0.1, 1, 2); }},
      {"dropout + residual add", s_rc, 3 * rc * es, [&] { ops::dropout_add(x, y, 0.1, 1, 2); }},
      {"to f32", s_rc, rc * (es + 4), [&] { ops::to_dtype(x, DType::f32); }},
      {"from f32", s_rc, rc * (es + 4), [&] { ops::to_dtype(xf, dt); }},
      {"fill 1", s_rc, rc * es, [&] { Tensor t = x; ops::fill_(t, 1.0); }},
      {"layer_norm", s_rc, 2 * rc * es, [&] { ops::layer_norm(x, w, bw, 1e-5); }},
      {"layer_norm backward", s_rc, 3 * rc * es,
       [&] { ops::layer_norm_backward(y, x, w, ln.mean, ln.rstd, true); }},
      {"sum over rows (bias grad)", s_rh, rh * es, [&] { ops::sum_to(h, {4 * C}); }},
      {"sum of squares (grad norm)", str(grads.size(), " tensors, ", total), double(total) * es,
       [&] { ops::sum_squares(grads); }},
      {"adamw (multi-tensor)", str(slots.size(), " tensors, ", total),
       double(total) * (dt == DType::f32 ? 4 + 4 * 3 + 4 * 3 : 2 + 4 * 3 + 4 * 3 + 2),
       [&] { ops::adamw_multi_(slots, args); }},
  };
  std::printf("flashgrad bench ops on %s, %s: GB/s against a device-to-device copy of %s\n",
              dev.str().c_str(), dtype_name(dt), s_rc.c_str());
  std::printf("  %-28s | %-26s | %10s | %8s | %7s\n", "op", "shape", "us", "GB/s", "of copy");
  double copy_gbs = 0;
  for (Row& r : rows) {
    const double us = time_us(r.fn, f.reps);
    const double gbs = r.bytes / (us * 1e3);
    if (copy_gbs == 0) copy_gbs = gbs;
    std::printf("  %-28s | %-26s | %10.1f | %8.0f | %6.0f%%\n", r.name, r.shape.c_str(), us, gbs,
                100 * gbs / copy_gbs);
    std::fflush(stdout);
  }
  // The GEMM epilogues of ops::linear (the MLP's c_fc shape): each form against the plain
  // product; the extra time is the epilogue's cost (the GELU form also writes pre, R x 4C).
  Tensor wfc = randn({4 * C, C}, opts), bfc = randn({4 * C}, opts);
  const double t_plain = time_us([&] { ops::linear(x, wfc, Tensor(), false); }, f.reps);
  const double t_bias = time_us([&] { ops::linear(x, wfc, bfc, false); }, f.reps);
  const double t_gelu = time_us([&] { ops::linear(x, wfc, bfc, true); }, f.reps);
  const double t_wg = time_us([&] { ops::linear_weight_grad(gh, x, false); }, f.reps);
  const double t_wgb = time_us([&] { ops::linear_weight_grad(gh, x, true); }, f.reps);
  std::printf("GEMM epilogues, x [%lld, %lld] w [%lld, %lld]: us, and the cost over the plain "
              "product\n", (long long)R, (long long)C, (long long)(4 * C), (long long)C);
  std::printf("  %-34s | %10.1f |\n", "y = x w^T", t_plain);
  std::printf("  %-34s | %10.1f | %+8.1f\n", "y = x w^T + b", t_bias, t_bias - t_plain);
  std::printf("  %-34s | %10.1f | %+8.1f (%.0f GB/s for writing pre)\n",
              "y = gelu(x w^T + b), pre saved", t_gelu, t_gelu - t_plain,
              rh * es / std::max(1e-3, (t_gelu - t_plain)) / 1e3);
  std::printf("  %-34s | %10.1f |\n", "gw = gy^T x", t_wg);
  std::printf("  %-34s | %10.1f | %+8.1f (%.0f GB/s reading gy)\n", "gw = gy^T x, gb = sum gy",
              t_wgb, t_wgb - t_wg, rh * es / std::max(1e-3, (t_wgb - t_wg)) / 1e3);
  // The hidden gradient of the MLP: c_proj's input gradient with the GELU folded in.
  Tensor wpr = randn({C, 4 * C}, opts);
  const double t_dx = time_us([&] { ops::linear_input_grad(x, wpr, Tensor(), false); }, f.reps);
  const double t_dg = time_us([&] { ops::linear_input_grad(x, wpr, h, true); }, f.reps);
  std::printf("  %-34s | %10.1f |\n", "gh = gy w", t_dx);
  // (kernels/cuda/linear.cu takes the DGELU_BGRAD epilogue only with this switch on.)
  std::printf("  %-34s | %10.1f | %+8.1f (%s)\n", "gh = (gy w) gelu'(pre), gb = sum", t_dg,
              t_dg - t_dx, env_flag("FLASHGRAD_DGELU_EPILOGUE") ? "cuBLASLt DGELU_BGRAD epilogue"
                                                               : "gemm, gelu backward, column sum");
}

#else

void run_bench_ops(const OpsBenchFlags&) {
  throw Error("bench ops: flashgrad was built without CUDA; the benchmark needs a GPU build");
}

#endif  // FLASHGRAD_WITH_CUDA

}  // namespace

void register_bench_ops(CLI::App& bench) {
  auto f = std::make_shared<OpsBenchFlags>();
  CLI::App* cmd = bench.add_subcommand(
      "ops", "GB/s of the elementwise, reduction and optimizer kernels at training shapes");
  cmd->add_option("--tokens", f->tokens, "rows (batch x context)")->capture_default_str();
  cmd->add_option("--n-embd", f->n_embd, "width (the MLP is 4x)")->capture_default_str();
  cmd->add_option("--params", f->params, "parameters for the optimizer rows")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "bf16 or fp32")->capture_default_str();
  cmd->add_option("--reps", f->reps, "calls per timed batch")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->callback([f] { run_bench_ops(*f); });
}

}  // namespace fg::cli
