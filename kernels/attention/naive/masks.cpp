// CPU fills of the naive attention path's masks (see masks.h).
#include "core/dispatch.h"
#include "kernels/attention/naive/masks.h"

#include <limits>

#include "kernels/common/convert.h"
#include "core/philox.h"
#include "core/error.h"

namespace fg {

void attention_bias_cpu(const AttentionParams& p, DType dtype, void* bias, void* row_valid) {
  const int64_t heads = p.block_mask ? p.block_mask_heads : 1;
  FG_DISPATCH_FLOAT(dtype, "attention_bias", [&] {
    scalar_t* b = static_cast<scalar_t*>(bias);
    scalar_t* rv = static_cast<scalar_t*>(row_valid);
    const scalar_t neg_inf =
        Convert<scalar_t>::from_double(-std::numeric_limits<double>::infinity());
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < p.Nq; ++i) {
        scalar_t* row = b + (h * p.Nq + i) * p.Nk;
        bool any = false;
        for (int64_t j = 0; j < p.Nk; ++j) {
          bool ok = attention_allowed(p, h, i, j);
          any = any || ok;
          row[j] = ok ? scalar_t(Convert<scalar_t>::from_double(0.0)) : neg_inf;
        }
        if (!any)
          for (int64_t j = 0; j < p.Nk; ++j) row[j] = Convert<scalar_t>::from_double(0.0);
        rv[h * p.Nq + i] = Convert<scalar_t>::from_double(any ? 1.0 : 0.0);
      }
  });
}

void attention_dropout_scale_cpu(const AttentionParams& p, DType dtype, void* scale) {
  const uint32_t threshold = attention_dropout_threshold(p.dropout_p);
  const double keep_scale = attention_dropout_keep_scale(p.dropout_p);
  FG_DISPATCH_FLOAT(dtype, "attention_dropout_scale", [&] {
    scalar_t* s = static_cast<scalar_t*>(scale);
    const scalar_t kept = Convert<scalar_t>::from_double(keep_scale);
    const scalar_t dropped = Convert<scalar_t>::from_double(0.0);
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t h = 0; h < p.Hq; ++h)
        for (int64_t i = 0; i < p.Nq; ++i) {
          scalar_t* row = s + ((b * p.Hq + h) * p.Nq + i) * p.Nk;
          for (int64_t j = 0; j < p.Nk; ++j)
            row[j] = attention_dropout_keep(p.seed, p.offset, uint32_t(p.batch_index_base + b), uint32_t(h),
                                            uint32_t(p.Hq), uint32_t(i), uint32_t(j), threshold)
                         ? kept
                         : dropped;
        }
  });
}

}  // namespace fg
