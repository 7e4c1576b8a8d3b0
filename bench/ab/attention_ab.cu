// A/B timing of the CUDA attention kernels of two flashgrad builds: this file is compiled once
// against each tree (only the entry points of kernels/attention/attention.h, whose names and
// signatures both share) and each binary times the same grid the same way. bench/ab/run.sh
// builds both and alternates their runs; the ratios say whether a change made a kernel slower.
//
//   attention_ab [--dtype bf16|fp16] [--reps 5] [--seconds 0.3]   (CSV on stdout)
//
// Grid: flash-attn's benchmark, hidden 2048 (H = 2048 / D), B * N = 16384 tokens, N 512 to
// 16384, D 64 and 128, causal off and on. Each measurement: warm-up, then `reps` batches of
// back-to-back calls between two CUDA events (no synchronisation inside a batch); the median
// of the per-call means is printed, in milliseconds.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"

#define AB_CHECK(call)                                                                  \
  do {                                                                                  \
    cudaError_t e_ = (call);                                                            \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "attention_ab: %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, \
                   __LINE__);                                                           \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

namespace {

__global__ void fill_normalish(unsigned short* x, size_t n, unsigned seed, bool bf16) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ seed;
    h ^= h >> 15; h *= 0x2c1b3c6du; h ^= h >> 12; h *= 0x297a2d39u; h ^= h >> 15;
    // Sum of four uniforms, centred: roughly normal with unit variance.
    float u = ((h & 0xff) + ((h >> 8) & 0xff) + ((h >> 16) & 0xff) + (h >> 24)) / 255.0f - 2.0f;
    u *= 1.7320508f;
    unsigned bits = __float_as_uint(u);
    if (bf16) {
      x[i] = (unsigned short)((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
    } else {
      __half hv = __float2half_rn(u);
      x[i] = *reinterpret_cast<unsigned short*>(&hv);
    }
  }
}

template <typename F> double time_ms(F&& fn, int reps, double seconds) {
  cudaEvent_t a, b;
  AB_CHECK(cudaEventCreate(&a));
  AB_CHECK(cudaEventCreate(&b));
  auto batch = [&](int iters) {
    AB_CHECK(cudaEventRecord(a));
    for (int i = 0; i < iters; ++i) fn();
    AB_CHECK(cudaEventRecord(b));
    AB_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    AB_CHECK(cudaEventElapsedTime(&ms, a, b));
    return double(ms) / iters;
  };
  for (int i = 0; i < 3; ++i) fn();
  const double one = batch(1);
  const int iters = std::max(2, std::min(500, int(seconds * 1000.0 / reps / std::max(one, 1e-3))));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) t.push_back(batch(iters));
  std::sort(t.begin(), t.end());
  AB_CHECK(cudaEventDestroy(a));
  AB_CHECK(cudaEventDestroy(b));
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string dtype = "bf16";
  int reps = 5;
  double seconds = 0.3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dtype")) dtype = argv[i + 1];
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
  }
  const bool bf16 = dtype == "bf16";
  const int64_t tokens = 16384, hidden = 2048;
  const size_t elems = size_t(tokens * hidden);
  unsigned short *q, *k, *v, *o, *dout, *dq, *dk, *dv;
  for (unsigned short** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv})
    AB_CHECK(cudaMalloc(p, elems * 2));
  unsigned seed = 1;
  for (unsigned short* p : {q, k, v, dout}) fill_normalish<<<1024, 256>>>(p, elems, seed++, bf16);
  float* lse = nullptr;
  AB_CHECK(cudaMalloc(&lse, size_t(tokens) * 64 * sizeof(float)));  // B * H * N <= tokens * 32
  void* ws = nullptr;
  size_t ws_bytes = 0;
  std::printf("D,causal,N,fwd_ms,bwd_ms\n");
  for (int64_t D : {64, 128})
    for (bool causal : {false, true})
      for (int64_t N = 512; N <= 16384; N *= 2) {
        fg::AttentionParams p;
        p.B = tokens / N;
        p.Nq = p.Nk = N;
        p.Hq = p.Hkv = hidden / D;
        p.D = D;
        p.dtype = bf16 ? fg::DType::bf16 : fg::DType::f16;
        fg::set_contiguous_strides(p);
        p.q = q; p.k = k; p.v = v; p.o = o; p.lse = lse;
        p.do_ = dout; p.dq = dq; p.dk = dk; p.dv = dv;
        p.softmax_scale = 1.0 / std::sqrt(double(D));
        p.causal = causal;
        const size_t need = fg::flash_attention_backward_workspace_bytes(p);
        if (need > ws_bytes) {
          if (ws) AB_CHECK(cudaFree(ws));
          AB_CHECK(cudaMalloc(&ws, need));
          ws_bytes = need;
        }
        p.workspace = ws;
        const double f = time_ms([&] { fg::flash_attention_forward_cuda(p, 0); }, reps, seconds);
        const double b = time_ms([&] { fg::flash_attention_backward_cuda(p, 0); }, reps, seconds);
        AB_CHECK(cudaDeviceSynchronize());
        std::printf("%lld,%d,%lld,%.5f,%.5f\n", (long long)D, int(causal), (long long)N, f, b);
        std::fflush(stdout);
      }
  return 0;
}
