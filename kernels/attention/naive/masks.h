// The masks the naive attention path multiplies and adds, made from the same element rules as
// the flash kernels (attention_allowed and attention_dropout_keep), so both paths compute the
// same function with bit-identical dropout.
#pragma once
#include <cstdint>

#include "kernels/attention/params.h"

namespace fg {

// bias [Hm, Nq, Nk] (Hm = p.block_mask ? p.block_mask_heads : 1): 0 where attention_allowed,
// -inf elsewhere; a row with no allowed key is all 0 and gets row_valid 0 (else 1), so the
// naive path can zero it after the softmax instead of producing NaN. `dtype` is the element
// type of bias and row_valid ([Hm, Nq]).
void attention_bias_cpu(const AttentionParams& p, DType dtype, void* bias, void* row_valid);
// scale [B, Hq, Nq, Nk]: 1/(1-p) where attention_dropout_keep, 0 elsewhere.
void attention_dropout_scale_cpu(const AttentionParams& p, DType dtype, void* scale);
#ifdef FLASHGRAD_WITH_CUDA
void attention_bias_cuda(const AttentionParams& p, DType dtype, void* bias, void* row_valid);
void attention_dropout_scale_cuda(const AttentionParams& p, DType dtype, void* scale);
#endif

}  // namespace fg
