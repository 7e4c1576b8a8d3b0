// The CUDA attention kernel table and the entry points that use it.
//
// Each direction has one table of kernels in priority order; an entry says whether it can
// compute a call (usable) and runs it (run: dtype and head dim to the launchers of
// launchers.h). flash_attention_{forward,backward}_cuda take the first usable entry that the
// environment allows; the benchmark asks which one that is (flash_attention_*_kernel) and the
// tests run every usable entry by name (flash_attention_*_cuda_with).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/dispatch.h"
#include "core/env.h"
#include "core/error.h"
#include "kernels/attention/attention.h"
#include "kernels/attention/decode/splits.h"
#include "kernels/attention/launchers.h"
#include "kernels/attention/sm80/config.cuh"
#include "kernels/kernels.h"

namespace fg {

namespace {

// ---------------------------------------------------------------------------------------------
// When a kernel can run a call

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

bool all_multiples(std::initializer_list<int64_t> strides, int64_t n) {
  for (int64_t s : strides)
    if (s % n != 0) return false;
  return true;
}

bool is_16bit(const AttentionParams& p) { return p.dtype == DType::bf16 || p.dtype == DType::f16; }

// Calls f(std::integral_constant<int, D>{}) for the runtime head dim, one of Ds.
template <int... Ds, typename F> void with_head_dim(int64_t D, F&& f) {
  const bool found = ((D == Ds ? (f(std::integral_constant<int, Ds>{}), true) : false) || ...);
  FG_CHECK(found, "flash attention: head dim D=", D, " has no CUDA kernel of this kind");
}

// Whether the mma.sync / 3xTF32 kernels' shared memory (sm80/config.cuh) at p's head dim fits
// what a block of dev may opt in to: everything does on Hopper (227 KB), but the backward at D
// 96 and 128 (162 KB) not on sm_86/89/120 (99 KB), nor at 256 (210 KB) on an A100 (163 KB);
// such calls run the SIMT kernels. p.D is one of the mma.sync head dims (the callers check it).
bool mma_smem_fits(const AttentionParams& p, const AttentionDevice& dev, bool backward) {
  size_t bytes = 0;
  with_head_dim<64, 96, 128, 256>(p.D, [&](auto d) {
    using C = attn::sm80::Config<decltype(d)::value>;
    bytes = backward ? std::max(C::kBwdSmem, C::kDqSmem)
                     : p.dtype == DType::f32 ? C::kTf32Smem : C::kFwdSmem;
  });
  return bytes <= dev.smem_optin;
}

// What every tensor-core kernel needs: bf16/f16 (mma.sync m16n8k16) at D 64, 96, 128 or 256,
// or f32 (3xTF32, m16n8k8) at D 64 or 128 (each kernel's rule narrows the head dims further),
// a positive softmax scale (the kernels fold it into exp2), 16-byte aligned Q, K, V, O rows
// (cp.async moves 16-byte chunks: pointers 16-byte aligned and every stride a multiple of 16
// bytes), and a GPU of compute capability 8.0 or later.
bool tensor_core_forward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  if (p.seqused_k) return false;  // per-entry key lengths: the decode kernel only
  if (p.dtype != DType::bf16 && p.dtype != DType::f16 && p.dtype != DType::f32) return false;
  if (p.D != 64 && p.D != 128 && (p.dtype == DType::f32 || (p.D != 96 && p.D != 256)))
    return false;
  if (!(p.softmax_scale > 0.0) || !std::isfinite(p.softmax_scale)) return false;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return false;
  const int64_t chunk = p.dtype == DType::f32 ? 4 : 8;  // elements per 16 bytes
  if (!all_multiples({p.q_batch_stride, p.q_seq_stride, p.q_head_stride, p.k_batch_stride,
                      p.k_seq_stride, p.k_head_stride, p.v_batch_stride, p.v_seq_stride,
                      p.v_head_stride, p.o_batch_stride, p.o_seq_stride, p.o_head_stride},
                     chunk))
    return false;
  return dev.major >= 8 && mma_smem_fits(p, dev, /*backward=*/false);
}

// The tensor-core backward is 16-bit only (D 64, 96, 128, 256; the wgmma one 64 and 128); it
// also reads dO with cp.async and writes dQ, dK, dV two elements at a time.
bool tensor_core_backward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  if (!is_16bit(p) || !tensor_core_forward_usable(p, dev)) return false;
  if (!mma_smem_fits(p, dev, /*backward=*/true)) return false;
  if (!aligned16(p.do_) || !aligned16(p.dq) || !aligned16(p.dk) || !aligned16(p.dv)) return false;
  return all_multiples({p.do_batch_stride, p.do_seq_stride, p.do_head_stride, p.dq_batch_stride,
                        p.dq_seq_stride, p.dq_head_stride, p.dk_batch_stride, p.dk_seq_stride,
                        p.dk_head_stride, p.dv_batch_stride, p.dv_seq_stride, p.dv_head_stride},
                       8);
}

// The wgmma kernels need sm_90a machine code in the build and a compute capability 9.x device.
bool hopper(const AttentionDevice& dev) { return dev.sm90a && dev.major == 9; }

// What a TMA tensor map takes (common/tensor_map.h): every stride of a dim longer than 1
// positive and under 2^40 bytes (a dim of size 1 never moves), coordinates within 32 bits.
bool tma_dims_ok(std::initializer_list<std::pair<int64_t, int64_t>> size_stride) {
  for (const auto& [size, stride] : size_stride) {
    if (size >= (int64_t(1) << 31)) return false;
    if (size > 1 && (stride <= 0 || stride >= (int64_t(1) << 39))) return false;
  }
  return true;
}
// Whether Q, K and V (and dO, for the backward) take tensor maps (tma_dims_ok).
bool tma_operands_ok(const AttentionParams& p, bool with_do) {
  return tma_dims_ok({{p.B, p.q_batch_stride}, {p.Nq, p.q_seq_stride}, {p.Hq, p.q_head_stride},
                      {p.B, p.k_batch_stride}, {p.Nk, p.k_seq_stride}, {p.Hkv, p.k_head_stride},
                      {p.B, p.v_batch_stride}, {p.Nk, p.v_seq_stride}, {p.Hkv, p.v_head_stride}}) &&
         (!with_do || tma_dims_ok({{p.B, p.do_batch_stride}, {p.Nq, p.do_seq_stride},
                                   {p.Hq, p.do_head_stride}}));
}
// The warp-specialised forward: what the wgmma forward needs, at D 64 or 128, no block mask (its
// 128-key tiles span two mask tiles), strides a tensor map takes, and at most 2^31 - 1 query
// tiles (its persistent work list counts them in 32 bits).
bool sm90ws_forward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  if (!is_16bit(p) || (p.D != 64 && p.D != 128) || p.block_mask != nullptr) return false;
  if (!tma_operands_ok(p, /*with_do=*/false)) return false;
  if ((p.Nq + 127) / 128 * p.Hq * p.B >= (int64_t(1) << 31)) return false;
  return tensor_core_forward_usable(p, dev) && hopper(dev);
}
bool sm90_forward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  return is_16bit(p) && p.D == 64 && tensor_core_forward_usable(p, dev) && hopper(dev);
}
bool sm80_forward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  return is_16bit(p) && tensor_core_forward_usable(p, dev);
}
bool tf32x3_forward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  return p.dtype == DType::f32 && tensor_core_forward_usable(p, dev);
}
// The split-KV decode kernel: forward calls with few query rows per kv head (decode_rows:
// new tokens x the heads of a GQA group, at most 4 row chunks of 8) and no more than 8 new
// tokens, no dropout and no block mask, 16-byte aligned Q, K, V rows (it reads 16 bytes per
// lane), a fp32/bf16/f16 dtype and D 32, 64 or 128, or 256 in bf16/f16 (a key's 16-byte slices
// must fill whole lanes of one warp: 32 at most). It comes first in the table: for such shapes
// the tiled kernels would spend most of each 64- or 128-row query tile on padding.
bool decode_usable(const AttentionParams& p, const AttentionDevice&) {
  if (p.dtype != DType::bf16 && p.dtype != DType::f16 && p.dtype != DType::f32) return false;
  if (p.B <= 0 || p.Nq <= 0 || p.Nk <= 0 || p.Hq <= 0 || p.Hkv <= 0 || p.Hq % p.Hkv != 0)
    return false;  // (the argument check names the problem)
  if (p.dropout_p != 0.0 || p.block_mask != nullptr) return false;
  if (p.Nq > 8 || attn::decode::decode_rows(p) > 4 * attn::decode::kRowsPerBlock) return false;
  if (p.D != 32 && p.D != 64 && p.D != 128 && (p.D != 256 || !is_16bit(p))) return false;
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v)) return false;
  const int64_t chunk = p.dtype == DType::f32 ? 4 : 8;
  return all_multiples({p.q_batch_stride, p.q_seq_stride, p.q_head_stride, p.k_batch_stride,
                        p.k_seq_stride, p.k_head_stride, p.v_batch_stride, p.v_seq_stride,
                        p.v_head_stride},
                       chunk);
}
// Every dtype and head dim (checked), but not per-entry key lengths: the decode kernel only.
bool simt_usable(const AttentionParams& p, const AttentionDevice&) {
  return p.seqused_k == nullptr;
}
bool sm90_backward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  return (p.D == 64 || p.D == 128) && tensor_core_backward_usable(p, dev) && hopper(dev);
}
// The warp-specialised backward: what the wgmma backward needs, and strides a tensor map takes
// for Q, dO, K and V. (Its launcher hands deterministic calls to the wgmma kernels.)
bool sm90ws_backward_usable(const AttentionParams& p, const AttentionDevice& dev) {
  return tma_operands_ok(p, /*with_do=*/true) && sm90_backward_usable(p, dev);
}

// ---------------------------------------------------------------------------------------------
// From the runtime dtype and head dim to the instantiated launchers

// Calls f(T{}) for the runtime 16-bit dtype.
template <typename F> void with_16bit(DType dt, F&& f) {
  if (dt == DType::bf16) f(bfloat16{});
  else f(float16{});
}

// The SIMT head dims; f64 has no D = 256 kernel (check_attention_params refuses it first).
template <typename T, typename F> void with_simt_head_dim(int64_t D, F&& f) {
  if constexpr (std::is_same_v<T, double>) with_head_dim<32, 64, 96, 128>(D, f);
  else with_head_dim<32, 64, 96, 128, 256>(D, f);
}

void simt_forward(const AttentionParams& p, cudaStream_t s) {
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cuda", [&] {
    with_simt_head_dim<scalar_t>(p.D, [&](auto d) { attn::simt::run_forward<scalar_t, d>(p, s); });
  });
}
void decode_forward(const AttentionParams& p, cudaStream_t s) {
  if (p.dtype == DType::f32) {
    with_head_dim<32, 64, 128>(p.D, [&](auto d) { attn::decode::run_forward<float, d>(p, s); });
    return;
  }
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<32, 64, 128, 256>(
        p.D, [&](auto d) { attn::decode::run_forward<decltype(t), d>(p, s); });
  });
}
void simt_backward(const AttentionParams& p, cudaStream_t s) {
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_backward_cuda", [&] {
    with_simt_head_dim<scalar_t>(p.D, [&](auto d) { attn::simt::run_backward<scalar_t, d>(p, s); });
  });
}
void sm80_forward(const AttentionParams& p, cudaStream_t s) {
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<64, 96, 128, 256>(
        p.D, [&](auto d) { attn::sm80::run_forward<decltype(t), d>(p, s); });
  });
}
void tf32x3_forward(const AttentionParams& p, cudaStream_t s) {
  with_head_dim<64, 128>(p.D, [&](auto d) { attn::sm80::run_forward<float, d>(p, s); });
}
void sm80_backward(const AttentionParams& p, cudaStream_t s) {
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<64, 96, 128, 256>(
        p.D, [&](auto d) { attn::sm80::run_backward<decltype(t), d>(p, s); });
  });
}
void sm90_forward(const AttentionParams& p, cudaStream_t s) {
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<64>(p.D, [&](auto d) { attn::sm90::run_forward<decltype(t), d>(p, s); });
  });
}
void sm90ws_forward(const AttentionParams& p, cudaStream_t s) {
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<64, 128>(p.D, [&](auto d) { attn::sm90ws::run_forward<decltype(t), d>(p, s); });
  });
}
void sm90_backward(const AttentionParams& p, cudaStream_t s) {
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<64, 128>(p.D, [&](auto d) { attn::sm90::run_backward<decltype(t), d>(p, s); });
  });
}
void sm90ws_backward(const AttentionParams& p, cudaStream_t s) {
  with_16bit(p.dtype, [&](auto t) {
    with_head_dim<64, 128>(p.D, [&](auto d) { attn::sm90ws::run_backward<decltype(t), d>(p, s); });
  });
}

// ---------------------------------------------------------------------------------------------
// The tables and the choice

// Environment overrides, read once (env_flag): FLASHGRAD_ATTENTION_SIMT=1 keeps the default
// choice on the SIMT kernels, FLASHGRAD_ATTENTION_WGMMA=0 off the wgmma ones (the
// warp-specialised "tma" forward too), FLASHGRAD_ATTENTION_TMA=0 off that one alone (to compare
// paths). The warp-specialised backward ("tma" in the backward table) is chosen only with
// FLASHGRAD_ATTENTION_TMA_BWD=1 until a GPU run has checked and timed it against the wgmma one
// (bench/NOTES-attention-backward.md). The 3xTF32 fp32 forward is chosen only with
// FLASHGRAD_ALLOW_TF32=1 (cuda::allow_tf32): its error is up to 5.5x that of PyTorch's fp32 SDPA, the SIMT forward's
// within 2x (bench/RESULTS.md, "fp32 attention accuracy"). Kernels run by name ignore them.
bool allowed_by_environment(const AttentionKernel& k) {
  static const bool simt_only = env_flag("FLASHGRAD_ATTENTION_SIMT");
  static const bool no_wgmma = !env_flag("FLASHGRAD_ATTENTION_WGMMA", /*unset=*/true);
  static const bool no_tma = !env_flag("FLASHGRAD_ATTENTION_TMA", /*unset=*/true);
  static const bool tma_bwd = env_flag("FLASHGRAD_ATTENTION_TMA_BWD");
  if (k.run == sm90ws_backward && !tma_bwd) return false;
  if (simt_only && std::strcmp(k.name, "simt") != 0) return false;
  if (std::strcmp(k.name, "tma") == 0 && (no_tma || no_wgmma)) return false;
  if (std::strcmp(k.name, "3xtf32") == 0 && !cuda::allow_tf32()) return false;
  return !(no_wgmma && std::strcmp(k.name, "wgmma") == 0);
}

const AttentionKernel& choose(const std::vector<AttentionKernel>& table, const AttentionParams& p,
                              const AttentionDevice& dev) {
  for (const AttentionKernel& k : table)
    // (Per-entry key lengths have one kernel: the overrides, for comparing paths, spare it.)
    if ((allowed_by_environment(k) || p.seqused_k) && k.usable(p, dev)) return k;
  if (p.seqused_k)
    throw Error(str("flash attention: per-entry key lengths (seqused_k) need the split-KV decode "
                    "kernel, which cannot run this call (Nq=", p.Nq, ", Hq/Hkv=", p.Hq / p.Hkv,
                    ", dtype ", dtype_name(p.dtype), ", D=", p.D, ", dropout ", p.dropout_p,
                    "): it takes at most 8 new tokens and 32 query rows per kv head (new tokens "
                    "x Hq/Hkv), no dropout or block mask, bf16/f16/f32, D 32/64/128 (and 256 in "
                    "bf16/f16) and 16-byte aligned rows"));
  throw Error("flash attention: no CUDA kernel can run this call (the SIMT one always should)");
}

const AttentionKernel& find(const std::vector<AttentionKernel>& table, const char* name,
                            const AttentionParams& p, const char* who) {
  std::string names;
  for (const AttentionKernel& k : table) {
    if (std::strcmp(k.name, name) == 0) {
      FG_CHECK(k.usable(p, attention_current_device()), who, ": kernel '", name,
               "' cannot run this call (dtype ", dtype_name(p.dtype), ", D=", p.D,
               ", this device and these pointers and strides); ",
               "flash_attention_*_kernel(params) names the one that can");
      return k;
    }
    names += names.empty() ? k.name : std::string(", ") + k.name;
  }
  throw Error(str(who, ": no attention kernel named '", name, "' (the kernels are ", names, ")"));
}

}  // namespace

const std::vector<AttentionKernel>& flash_attention_forward_kernels() {
  static const std::vector<AttentionKernel> table = {
      {"splitkv", decode_usable, decode_forward},
      {"tma", sm90ws_forward_usable, sm90ws_forward},
      {"wgmma", sm90_forward_usable, sm90_forward},
      {"mma", sm80_forward_usable, sm80_forward},
      {"3xtf32", tf32x3_forward_usable, tf32x3_forward},
      {"simt", simt_usable, simt_forward},
  };
  return table;
}

const std::vector<AttentionKernel>& flash_attention_backward_kernels() {
  static const std::vector<AttentionKernel> table = {
      {"tma", sm90ws_backward_usable, sm90ws_backward},
      {"wgmma", sm90_backward_usable, sm90_backward},
      {"mma", tensor_core_backward_usable, sm80_backward},
      {"simt", simt_usable, simt_backward},
  };
  return table;
}

AttentionDevice attention_current_device() {
  thread_local int device = -1;
  thread_local AttentionDevice dev;
  const int d = cuda_current_device();
  if (d != device) {
    const CudaDeviceInfo& info = cuda_device_info(d);
    dev.major = info.major;
    dev.smem_optin = info.shared_memory_optin;
#if defined(FLASHGRAD_HAVE_SM90A)
    dev.sm90a = true;
#endif
    device = d;
  }
  return dev;
}

const char* flash_attention_forward_kernel(const AttentionParams& p, const AttentionDevice& dev) {
  return choose(flash_attention_forward_kernels(), p, dev).name;
}
const char* flash_attention_backward_kernel(const AttentionParams& p, const AttentionDevice& dev) {
  return choose(flash_attention_backward_kernels(), p, dev).name;
}
const char* flash_attention_forward_kernel(const AttentionParams& p) {
  return flash_attention_forward_kernel(p, attention_current_device());
}
const char* flash_attention_backward_kernel(const AttentionParams& p) {
  return flash_attention_backward_kernel(p, attention_current_device());
}

size_t flash_attention_forward_workspace_bytes(const AttentionParams& p) {
  // The kernel the call will take (its usable() rule, and the environment) decides.
  if (!p.q || std::strcmp(flash_attention_forward_kernel(p), "splitkv") != 0) return 0;
  const attn::decode::Split sp =
      attn::decode::decode_split(p, cuda_current_device_info().sm_count, true);
  return attn::decode::decode_workspace_bytes(p, sp);
}

void flash_attention_forward_cuda(const AttentionParams& p, cudaStream_t stream) {
  check_attention_params(p, /*backward=*/false, /*cuda=*/true);
  choose(flash_attention_forward_kernels(), p, attention_current_device()).run(p, stream);
}
void flash_attention_backward_cuda(const AttentionParams& p, cudaStream_t stream) {
  check_attention_params(p, /*backward=*/true, /*cuda=*/true);
  choose(flash_attention_backward_kernels(), p, attention_current_device()).run(p, stream);
}

void flash_attention_forward_cuda_with(const char* kernel, const AttentionParams& p,
                                       cudaStream_t stream) {
  check_attention_params(p, /*backward=*/false, /*cuda=*/true);
  find(flash_attention_forward_kernels(), kernel, p, "flash_attention_forward_cuda_with")
      .run(p, stream);
}
void flash_attention_backward_cuda_with(const char* kernel, const AttentionParams& p,
                                        cudaStream_t stream) {
  check_attention_params(p, /*backward=*/true, /*cuda=*/true);
  find(flash_attention_backward_kernels(), kernel, p, "flash_attention_backward_cuda_with")
      .run(p, stream);
}

}  // namespace fg
