// The attention node with grouped-query heads, a causal block mask and dropout, checked
// against the naive path (the same function written with ordinary autograd ops, which
// materialises the N x N scores).
//
//   ./build/examples/attention          on the CPU
//   ./build/examples/attention cuda     on the GPU
//
// Both paths draw the dropout mask from the same counter-based generator, so with the same
// seed they compute the same function and their outputs and gradients agree to rounding. The
// program prints the relative errors and the bytes each graph keeps for backward, and exits
// with status 1 when an error is above the tolerance.
#include <cmath>
#include <cstdio>

#include "autograd/attention.h"
#include "autograd/functions.h"

using namespace fg;

namespace {

// ||a - b|| / ||b||, on the host in double.
double rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) num += (x[i] - y[i]) * (x[i] - y[i]), den += y[i] * y[i];
  return std::sqrt(num / den);
}

}  // namespace

int main(int argc, char** argv) {
  const Device device = device_from_string(argc > 1 ? argv[1] : "cpu");

  // 8 query heads share 2 key/value heads (GQA: each K/V head serves 4 query heads). The
  // length is not a multiple of the 64-token tile.
  const int64_t B = 2, N = 200, Hq = 8, Hkv = 2, D = 32;
  Generator gen(2024);
  const TensorOptions f32 = TensorOptions(DType::f32).device(device);
  Tensor q = randn({B, N, Hq, D}, f32, &gen).set_requires_grad(true);
  Tensor k = randn({B, N, Hkv, D}, f32, &gen).set_requires_grad(true);
  Tensor v = randn({B, N, Hkv, D}, f32, &gen).set_requires_grad(true);
  Tensor dout = randn({B, N, Hq, D}, f32, &gen);  // the gradient that flows into the output

  // A causal sliding window of 64 tokens as a block mask: a query tile sees its own key tile
  // and the one before it; the flash kernels never load the tiles it hides. On top of it the
  // causal mask, and dropout with p = 0.1 from a fixed seed.
  AttentionOptions options;
  options.causal()
      .block_mask(BlockMask::sliding_window(N, N, /*window=*/64, /*causal=*/true))
      .dropout(0.1)
      .seed(/*seed=*/7, /*offset=*/0);

  struct Result {
    Tensor o, dq, dk, dv;
    size_t saved_bytes;
  };
  auto run = [&](AttentionImpl impl) {
    for (Tensor* t : {&q, &k, &v}) t->zero_grad();
    Tensor o = scaled_dot_product_attention(q, k, v, AttentionOptions(options).impl(impl));
    const size_t saved = saved_bytes_for_backward(o);  // what the graph keeps for backward
    o.backward(dout);
    return Result{o.detach(), q.grad().clone(), k.grad().clone(), v.grad().clone(), saved};
  };
  const Result flash = run(AttentionImpl::flash);
  const Result naive = run(AttentionImpl::naive);

  const double errors[] = {rel_err(flash.o, naive.o), rel_err(flash.dq, naive.dq),
                           rel_err(flash.dk, naive.dk), rel_err(flash.dv, naive.dv)};
  const char* names[] = {"O", "dQ", "dK", "dV"};
  const double tolerance = 1e-5;
  bool ok = true;
  std::printf("flash vs naive attention on %s: B %lld, N %lld, %lld query heads on %lld kv heads, "
              "D %lld, causal window 64, dropout 0.1, fp32\n",
              device.str().c_str(), (long long)B, (long long)N, (long long)Hq, (long long)Hkv,
              (long long)D);
  for (int i = 0; i < 4; ++i) {
    std::printf("  %-2s relative error %.2e\n", names[i], errors[i]);
    ok = ok && errors[i] < tolerance;
  }
  std::printf("saved for backward: flash %s, naive %s (the N x N probabilities)\n",
              format_bytes(flash.saved_bytes).c_str(), format_bytes(naive.saved_bytes).c_str());
  if (!ok) {
    std::fprintf(stderr, "error: flash and naive attention differ by more than %.0e\n", tolerance);
    return 1;
  }
  return 0;
}
