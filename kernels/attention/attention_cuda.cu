// CUDA entry points of the attention kernels: check the arguments, then dispatch on dtype and
// head dim to the launchers instantiated in kernels/attention/instantiations/.
#include <type_traits>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_launch.h"
#include "tensor/error.h"

namespace fg {

namespace {
// Calls f.template operator()<T, D>() for the runtime dtype and head dim (D in 32, 64, 128;
// check_attention_params has already rejected the others with a clear message).
template <typename T, typename F> void dispatch_head_dim(int64_t D, const char* who, F&& f) {
  switch (D) {
    case 32: f(T{}, std::integral_constant<int, 32>{}); break;
    case 64: f(T{}, std::integral_constant<int, 64>{}); break;
    case 128: f(T{}, std::integral_constant<int, 128>{}); break;
    default:
      throw Error(str(who, ": head dim D=", D, " is not supported (supported: 32, 64, 128)"));
  }
}
}  // namespace

void flash_attention_forward_cuda(const AttentionParams& p, cudaStream_t stream) {
  check_attention_params(p, /*backward=*/false, /*cuda=*/true);
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_forward_cuda", [&] {
    dispatch_head_dim<scalar_t>(p.D, "flash_attention_forward_cuda", [&](auto t, auto d) {
      attn::run_attention_forward<decltype(t), decltype(d)::value>(p, stream);
    });
  });
}

void flash_attention_backward_cuda(const AttentionParams& p, cudaStream_t stream) {
  check_attention_params(p, /*backward=*/true, /*cuda=*/true);
  FG_DISPATCH_FLOAT(p.dtype, "flash_attention_backward_cuda", [&] {
    dispatch_head_dim<scalar_t>(p.D, "flash_attention_backward_cuda", [&](auto t, auto d) {
      attn::run_attention_backward<decltype(t), decltype(d)::value>(p, stream);
    });
  });
}

}  // namespace fg
