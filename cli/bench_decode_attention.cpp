// `flashgrad bench decode-attention`: the split-KV decode kernel alone, reading a key/value
// cache of growing length, in GB/s (the bytes of K and V it must read over the time per call),
// beside the tiled flash kernel the dispatcher would take without it.
//
//   flashgrad bench decode-attention                         # B 1, 12 heads, D 64, 1k .. 32k
//   flashgrad bench decode-attention --heads 32 --kv-heads 8 --head-dim 128 --batch 8
//
// One call = one new token per sequence (Nq 1) attending to L cached keys, bf16, causal.
// Timing as in `bench attention`: batches of back-to-back calls between CUDA events, median of
// the batches' means. Each length is also checked: the two kernels' outputs must agree.
// Back-to-back calls on one cache would read it from L2 once it fits there (the H100's 50 MB
// hold 8k keys of the default shape), which a decode step never does: its layers read 12
// different caches. So the calls cycle through enough copies of the cache to fill twice the
// L2 (`--warm-l2` reads one copy again and again instead). Each length is timed twice: calls
// launched one by one (what an eager caller gets, launch costs included), and a pass over the
// copies (at least 32 calls) captured in one CUDA graph and replayed (the GPU's time alone, as
// in a graphed decode step).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "kernels/attention/attention.h"
#include "train/fileio.h"
#ifdef FLASHGRAD_WITH_CUDA
#include "cli/bench_timing.h"
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "tensor/device.h"
#include "tensor/graph.h"
#endif

namespace fg::cli {

namespace {

struct Flags {
  std::vector<int64_t> lens{1024, 2048, 4096, 8192, 16384, 32768};
  int64_t batch = 1, heads = 12, kv_heads = 12, head_dim = 64;
  double seconds = 0.3;
  bool warm_l2 = false;
  std::string json;
};

#ifdef FLASHGRAD_WITH_CUDA
struct DeviceMemory {
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) { FG_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(bytes, 16))); }
  ~DeviceMemory() { cudaFree(ptr); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

// bf16 values of a fixed pseudo-random sequence in [-1, 1), written on the host and uploaded.
void fill(void* dst, size_t n, uint32_t seed) {
  std::vector<uint16_t> h(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& e : h) {
    x = x * 1664525u + 1013904223u;
    const float f = float(x >> 8) / float(1 << 24) * 2.f - 1.f;
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    e = uint16_t(bits >> 16);
  }
  FG_CUDA_CHECK(cudaMemcpy(dst, h.data(), n * 2, cudaMemcpyHostToDevice));
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Milliseconds per call: 3 warm-up calls, then the median of 5 batches (cli/bench_timing.h).
template <typename F> double time_ms(F&& f, double seconds) {
  EventTimer timer;
  return cli::time_ms(timer, f, 3, 5, seconds, 2000);
}

void run(const Flags& f) {
  const int64_t B = f.batch, H = f.heads, Hkv = f.kv_heads, D = f.head_dim;
  FG_CHECK(B >= 1 && H >= 1 && Hkv >= 1 && H % Hkv == 0, "bench decode-attention: --heads ", H,
           " must be a positive multiple of --kv-heads ", Hkv, " and --batch positive");
  FG_CHECK(D == 32 || D == 64 || D == 128 || D == 256, "bench decode-attention: --head-dim ", D,
           " must be 32, 64, 128 or 256");
  FG_CHECK(cuda_available(), "bench decode-attention: no CUDA device found; this benchmark needs "
           "a GPU");
  const CudaDeviceInfo& dev = cuda_current_device_info();
  std::printf("flashgrad bench decode-attention on %s: batch %lld, %lld query heads, %lld kv heads, "
              "D %lld, bf16, one new token per sequence, causal\n",
              dev.name.c_str(), (long long)B, (long long)H, (long long)Hkv, (long long)D);
  std::printf("  (calls cycle through copies of the cache filling twice the L2%s)\n",
              f.warm_l2 ? "; --warm-l2: one copy instead" : "");
  std::printf("  cache len | splitkv us | GB/s   | graphed us | GB/s   | tiled kernel | its us   | speedup | max |diff|\n");
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t L : f.lens) {
    FG_CHECK(L >= 1 && L <= (int64_t(1) << 24), "bench decode-attention: cache length ", L,
             " must be from 1 to 2^24");
    const size_t nq = size_t(B * H * D), nkv = size_t(B * L * Hkv * D);
    DeviceMemory q(nq * 2), o(nq * 2), o2(nq * 2), lse(size_t(B * H) * 4);
    // Copies of K and V that together fill twice the L2, all holding the same values.
    int l2_bytes = 0;
    FG_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev.index));
    const size_t copies = f.warm_l2 ? 1 : 1 + size_t(2.0 * l2_bytes / (4.0 * double(nkv)));
    std::vector<std::unique_ptr<DeviceMemory>> ks, vs;
    for (size_t c = 0; c < copies; ++c) {
      ks.push_back(std::make_unique<DeviceMemory>(nkv * 2));
      vs.push_back(std::make_unique<DeviceMemory>(nkv * 2));
    }
    fill(q.ptr, nq, 1), fill(ks[0]->ptr, nkv, 2), fill(vs[0]->ptr, nkv, 3);
    for (size_t c = 1; c < copies; ++c) {
      FG_CUDA_CHECK(cudaMemcpy(ks[c]->ptr, ks[0]->ptr, nkv * 2, cudaMemcpyDeviceToDevice));
      FG_CUDA_CHECK(cudaMemcpy(vs[c]->ptr, vs[0]->ptr, nkv * 2, cudaMemcpyDeviceToDevice));
    }
    AttentionParams p;
    p.B = B, p.Nq = 1, p.Nk = L, p.Hq = H, p.Hkv = Hkv, p.D = D;
    set_contiguous_strides(p);
    p.dtype = DType::bf16;
    p.softmax_scale = 1.0 / std::sqrt(double(D));
    p.causal = true;
    p.q = q.ptr, p.k = ks[0]->ptr, p.v = vs[0]->ptr, p.o = o.ptr, p.lse = lse.ptr;
    const std::string chosen = flash_attention_forward_kernel(p);
    DeviceMemory ws(flash_attention_forward_workspace_bytes(p));
    p.split_workspace = ws.ptr;
    // The tiled kernel it replaces: the first entry of the table after it that can run p.
    std::string tiled;
    for (const AttentionKernel& kern : flash_attention_forward_kernels())
      if (std::string(kern.name) != "splitkv" && kern.usable(p, attention_current_device())) {
        tiled = kern.name;
        break;
      }
    size_t call = 0;  // the copy the next call reads
    auto next_copy = [&](AttentionParams& params) -> AttentionParams& {
      params.k = ks[call % copies]->ptr, params.v = vs[call % copies]->ptr, ++call;
      return params;
    };
    const double ms = time_ms([&] { flash_attention_forward_cuda(next_copy(p)); }, f.seconds);
    const size_t graph_calls = std::max<size_t>(32, copies);  // each replay reads every copy
    CudaGraph graph;
    graph.capture([&] {
      for (size_t i = 0; i < graph_calls; ++i) flash_attention_forward_cuda(next_copy(p));
    });
    const double ms_graph = time_ms([&] { graph.replay(); }, f.seconds) / double(graph_calls);
    AttentionParams pt = p;
    pt.o = o2.ptr;
    const double ms_tiled =
        time_ms([&] { flash_attention_forward_cuda_with(tiled.c_str(), next_copy(pt)); }, f.seconds);
    FG_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint16_t> a(nq), b(nq);
    FG_CUDA_CHECK(cudaMemcpy(a.data(), o.ptr, nq * 2, cudaMemcpyDeviceToHost));
    FG_CUDA_CHECK(cudaMemcpy(b.data(), o2.ptr, nq * 2, cudaMemcpyDeviceToHost));
    double diff = 0;
    for (size_t i = 0; i < nq; ++i)
      diff = std::max(diff, double(std::fabs(bf16_to_float(a[i]) - bf16_to_float(b[i]))));
    const double bytes = 2.0 * double(nkv) * 2;
    const double gbs = bytes / (ms * 1e-3) / 1e9, gbs_graph = bytes / (ms_graph * 1e-3) / 1e9;
    std::printf("  %9lld | %10.2f | %6.0f | %10.2f | %6.0f | %-12s | %8.2f | %6.2fx | %.1e%s\n",
                (long long)L, ms * 1e3, gbs, ms_graph * 1e3, gbs_graph, tiled.c_str(),
                ms_tiled * 1e3, ms_tiled / ms, diff,
                chosen == "splitkv" ? "" : "  (splitkv not chosen!)");
    std::fflush(stdout);
    rows.push_back({{"cache_len", L}, {"kernel", chosen}, {"cache_copies", copies},
                    {"us", ms * 1e3}, {"gb_per_s", gbs}, {"graph_us", ms_graph * 1e3},
                    {"graph_gb_per_s", gbs_graph},
                    {"tiled_kernel", tiled}, {"tiled_us", ms_tiled * 1e3},
                    {"max_abs_diff", diff}});
    FG_CHECK(chosen == "splitkv", "bench decode-attention: the dispatcher chose '", chosen,
             "' for a decode call, not the split-KV kernel");
    FG_CHECK(diff < 0.05, "bench decode-attention: the split-KV kernel and ", tiled,
             " disagree by ", diff, " at cache length ", L);
  }
  if (!f.json.empty()) {
    nlohmann::json j = {{"device", dev.name}, {"batch", B}, {"heads", H}, {"kv_heads", Hkv},
                        {"head_dim", D}, {"dtype", "bf16"}, {"results", rows}};
    train::write_file_atomic(f.json, j.dump(2) + "\n");
  }
}
#else
void run(const Flags&) {
  throw Error("bench decode-attention: flashgrad was built without CUDA; it needs a GPU build");
}
#endif

}  // namespace

void register_bench_decode_attention(CLI::App& bench) {
  auto flags = std::make_shared<Flags>();
  Flags& f = *flags;
  CLI::App* cmd = bench.add_subcommand(
      "decode-attention", "GB/s of the split-KV decode attention kernel over cache lengths");
  cmd->add_option("--lens", f.lens, "cache lengths (comma separated)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--batch", f.batch, "sequences")->capture_default_str();
  cmd->add_option("--heads", f.heads, "query heads")->capture_default_str();
  cmd->add_option("--kv-heads", f.kv_heads, "key/value heads")->capture_default_str();
  cmd->add_option("--head-dim", f.head_dim, "head dim: 32, 64, 128 or 256")->capture_default_str();
  cmd->add_option("--seconds", f.seconds, "time budget per measurement")->capture_default_str();
  cmd->add_flag("--warm-l2", f.warm_l2,
                "read one copy of the cache every call (it stays in L2 when it fits)");
  cmd->add_option("--json", f.json, "also write the results to this JSON file");
  cmd->callback([flags] { run(*flags); });
}

}  // namespace fg::cli
