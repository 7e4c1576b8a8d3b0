// CUDA fills of the naive attention path's masks; element for element as masks.cpp.
#include <cuda_runtime.h>
#include <math_constants.h>

#include <limits>

#include "core/dispatch.h"
#include "kernels/attention/naive/masks.h"
#include "kernels/common/convert.h"
#include "core/philox.h"
#include "core/cuda_check.h"

namespace fg {

namespace {

// One thread per (head, row): rows are short enough for the naive path's sizes.
template <typename T>
__global__ void bias_kernel(AttentionParams p, int64_t heads, T* bias, T* row_valid) {
  int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r >= heads * p.Nq) return;
  int64_t h = r / p.Nq, i = r % p.Nq;
  T* row = bias + r * p.Nk;
  bool any = false;
  for (int64_t j = 0; j < p.Nk; ++j) {
    bool ok = attention_allowed(p, h, i, j);
    any = any || ok;
    row[j] = Convert<T>::from_double(ok ? 0.0 : -CUDART_INF);
  }
  if (!any)
    for (int64_t j = 0; j < p.Nk; ++j) row[j] = Convert<T>::from_double(0.0);
  row_valid[r] = Convert<T>::from_double(any ? 1.0 : 0.0);
}

template <typename T>
__global__ void dropout_scale_kernel(AttentionParams p, uint32_t threshold, T kept, T dropped,
                                     T* scale) {
  const int64_t n = p.B * p.Hq * p.Nq * p.Nk;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t j = e % p.Nk, rest = e / p.Nk;
    int64_t i = rest % p.Nq;
    rest /= p.Nq;
    int64_t h = rest % p.Hq, b = rest / p.Hq;
    scale[e] = attention_dropout_keep(p.seed, p.offset, uint32_t(p.batch_index_base + b), uint32_t(h), uint32_t(p.Hq),
                                      uint32_t(i), uint32_t(j), threshold)
                   ? kept
                   : dropped;
  }
}

}  // namespace

void attention_bias_cuda(const AttentionParams& p, DType dtype, void* bias, void* row_valid) {
  const int64_t heads = p.block_mask ? p.block_mask_heads : 1;
  const int64_t rows = heads * p.Nq;
  FG_DISPATCH_FLOAT(dtype, "attention_bias", [&] {
    bias_kernel<scalar_t><<<int((rows + 127) / 128), 128>>>(p, heads, static_cast<scalar_t*>(bias),
                                                            static_cast<scalar_t*>(row_valid));
    FG_LAUNCH_CHECK();
  });
}

void attention_dropout_scale_cuda(const AttentionParams& p, DType dtype, void* scale) {
  const int64_t n = p.B * p.Hq * p.Nq * p.Nk;
  int blocks = int(std::min<int64_t>((n + 255) / 256, 65535 * 8));
  FG_DISPATCH_FLOAT(dtype, "attention_dropout_scale", [&] {
    dropout_scale_kernel<scalar_t>
        <<<blocks, 256>>>(p, attention_dropout_threshold(p.dropout_p),
                          Convert<scalar_t>::from_double(attention_dropout_keep_scale(p.dropout_p)),
                          Convert<scalar_t>::from_double(0.0), static_cast<scalar_t*>(scale));
    FG_LAUNCH_CHECK();
  });
}

}  // namespace fg
