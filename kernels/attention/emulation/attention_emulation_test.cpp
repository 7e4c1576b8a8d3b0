// Runs the CUDA attention kernels on the CPU, for checking their logic on a machine without a
// GPU. Not part of the build (CMake globs neither this folder nor C++20).
//
// Each CUDA thread becomes a std::thread; __syncthreads and __syncwarp are std::barriers (so a
// missing barrier shows up as a race, as with independent thread scheduling on a real GPU);
// shuffles go through a per-warp slot; atomicAdd takes a mutex; shared memory is one static
// buffer filled with 0xFF before each block. Blocks run one after another. The launch
// sequence mirrors run_attention_forward / run_attention_backward in attention_kernels.cuh.
// The test cases compare against the double-precision reference of
// tests/test_attention_kernels.cpp (included below, so its CPU tests run here too).
//
// Build and run from the repository root (takes minutes: 256 threads per block):
//   printf '#define CATCH_CONFIG_MAIN\n#include <catch2/catch.hpp>\n' > /tmp/catch_main.cpp
//   g++ -std=c++20 -O2 -I. kernels/attention/emulation/attention_emulation_test.cpp \
//       kernels/attention/attention_cpu.cpp kernels/attention/attention_common.cpp \
//       /tmp/catch_main.cpp -o /tmp/attention_emulation -lpthread
//   /tmp/attention_emulation "[emu]"
#include <barrier>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#include <cmath>

struct dim3 { unsigned x = 1, y = 1, z = 1; dim3() = default; dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(x)
#define __shared__
#define FG_ATTENTION_EMULATE 1

namespace emu {
std::unique_ptr<std::barrier<>> block_bar;
std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
double slot[64][32];
std::mutex atomic_mu;
}
inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }
inline void __syncwarp() { emu::warp_bar[threadIdx.x / 32]->arrive_and_wait(); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int m) {
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  emu::slot[w][l] = double(v);
  emu::warp_bar[w]->arrive_and_wait();
  T r = T(emu::slot[w][l ^ m]);
  emu::warp_bar[w]->arrive_and_wait();
  return r;
}
template <typename T> T atomicAdd(T* p, T v) { std::lock_guard<std::mutex> g(emu::atomic_mu); T o = *p; *p += v; return o; }

namespace fg { namespace attn { alignas(16) unsigned char attention_smem[256 * 1024]; } }

#include "kernels/attention/attention_kernels.cuh"

namespace emu {
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
  if (smem > sizeof(fg::attn::attention_smem)) throw std::runtime_error("smem too large");
  gridDim = grid; blockDim = block;
  const unsigned nt = block.x;
  for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
    std::memset(fg::attn::attention_smem, 0xFF, sizeof(fg::attn::attention_smem));  // garbage
    block_bar = std::make_unique<std::barrier<>>(nt);
    warp_bar.clear();
    for (unsigned w = 0; w < (nt + 31) / 32; ++w) warp_bar.push_back(std::make_unique<std::barrier<>>(32));
    std::vector<std::thread> th;
    for (unsigned t = 0; t < nt; ++t) th.emplace_back([=] { threadIdx = dim3(t); blockIdx = dim3(x, y, z); kernel(args...); });
    for (auto& t : th) t.join();
  }
}
}  // namespace emu

namespace fg { namespace attn {
// Mirrors of run_attention_forward / run_attention_backward.
template <typename T, int D> void emu_forward(const AttentionParams& p) {
  using Cfg = Config<T, D>; using A = typename Acc<T>::type;
  const size_t smem = forward_smem_bytes<A, D, Cfg::kFwdBlockQ, Cfg::kFwdBlockK>();
  emu::launch(attention_forward_kernel<T, D, Cfg::kFwdBlockQ, Cfg::kFwdBlockK, Cfg::kWarps>,
              dim3(unsigned((p.Nq + Cfg::kFwdBlockQ - 1) / Cfg::kFwdBlockQ), unsigned(p.Hq), unsigned(p.B)),
              dim3(Cfg::kWarps * 32), smem, p);
}
template <typename T, int D> void emu_backward(const AttentionParams& p) {
  using Cfg = Config<T, D>; using A = typename Acc<T>::type;
  const int64_t rows = p.B * p.Hq * p.Nq;
  A* Di = static_cast<A*>(p.workspace);
  A* dq_accum = reinterpret_cast<A*>(static_cast<unsigned char*>(p.workspace) + workspace_pad(size_t(rows) * sizeof(A)));
  emu::launch(attention_bwd_dot_kernel<T, D>, dim3(unsigned((rows + 7) / 8)), dim3(256), 0, p, Di);
  const dim3 kv_grid(unsigned((p.Nk + Cfg::kBwdBlockK - 1) / Cfg::kBwdBlockK), unsigned(p.Hkv), unsigned(p.B));
  const size_t kv_smem = bwd_dkdv_smem_bytes<A, D, Cfg::kBwdBlockK, Cfg::kBwdBlockQ>();
  if (!p.deterministic) {
    std::memset(dq_accum, 0, size_t(rows) * D * sizeof(A));
    emu::launch(attention_bwd_dkdv_kernel<T, D, Cfg::kBwdBlockK, Cfg::kBwdBlockQ, Cfg::kWarps, true>, kv_grid, dim3(Cfg::kWarps * 32), kv_smem, p, (const A*)Di, dq_accum);
    const int64_t n = rows * D;
    emu::launch(attention_bwd_dq_convert_kernel<T, D>, dim3(unsigned(std::min<int64_t>((n + 255) / 256, 3))), dim3(256), 0, p, (const A*)dq_accum);
  } else {
    emu::launch(attention_bwd_dkdv_kernel<T, D, Cfg::kBwdBlockK, Cfg::kBwdBlockQ, Cfg::kWarps, false>, kv_grid, dim3(Cfg::kWarps * 32), kv_smem, p, (const A*)Di, (A*)nullptr);
    emu::launch(attention_bwd_dq_kernel<T, D, Cfg::kDqBlockQ, Cfg::kDqBlockK, Cfg::kWarps>,
                dim3(unsigned((p.Nq + Cfg::kDqBlockQ - 1) / Cfg::kDqBlockQ), unsigned(p.Hq), unsigned(p.B)),
                dim3(Cfg::kWarps * 32), bwd_dq_smem_bytes<A, D, Cfg::kDqBlockQ, Cfg::kDqBlockK>(), p, (const A*)Di);
  }
}
}}  // namespace fg::attn

#include "tests/test_attention_kernels.cpp"

namespace {
template <typename T, int D> void check_emu(Cfg c) {
  c.D = D;
  for (bool det : {false, true}) {
    Problem<T> pr(c);
    pr.p.deterministic = det;
    std::vector<unsigned char> ws(flash_attention_backward_workspace_bytes(pr.p), 0xFF);
    pr.p.workspace = ws.data();
    fg::attn::emu_forward<T, D>(pr.p);
    fg::attn::emu_backward<T, D>(pr.p);
    pr.check(det ? "emulated cuda (deterministic)" : "emulated cuda (atomic)", tolerance<T>());
  }
}
template <typename T> void check_emu_all_d(Cfg c) {
  check_emu<T, 32>(c); check_emu<T, 64>(c); check_emu<T, 128>(c);
}
}

TEST_CASE("emulated cuda: basic", "[emu]") {
  Cfg c; c.B = 1; c.Nq = 37; c.Nk = 53;
  check_emu<float, 32>(c);
  check_emu<double, 32>(c);
  check_emu<bfloat16, 32>(c);
  check_emu<float16, 32>(c);
}
TEST_CASE("emulated cuda: all d", "[emu]") {
  Cfg c; c.B = 1; c.Nq = 70; c.Nk = 45; c.Hq = 2; c.Hkv = 1; c.causal = true; c.p = 0.2;
  check_emu_all_d<float>(c);
  check_emu_all_d<double>(c);
  check_emu_all_d<bfloat16>(c);
}
TEST_CASE("emulated cuda: causal nq<nk, gqa, dropout", "[emu]") {
  Cfg c; c.B = 2; c.Nq = 40; c.Nk = 150; c.Hq = 4; c.Hkv = 2; c.causal = true; c.p = 0.1;
  check_emu<float, 64>(c);
  check_emu<double, 64>(c);
  check_emu<float16, 64>(c);
}
TEST_CASE("emulated cuda: block masks", "[emu]") {
  Cfg c; c.B = 1; c.Nq = 200; c.Nk = 260; c.Hq = 1; c.Hkv = 1;
  c.mask = sliding_window_block_mask(c.Nq, c.Nk, 70, true); c.causal = true;
  check_emu<float, 32>(c);
  check_emu<double, 32>(c);
  c.mask = global_local_block_mask(c.Nq, c.Nk, 10, 64); c.causal = false; c.p = 0.3;
  check_emu<float, 32>(c);
  check_emu<bfloat16, 32>(c);
}
