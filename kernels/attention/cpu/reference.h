// The fp64 attention reference: the function of params.h computed the plain way, in double,
// every score of a row before its softmax. It is the oracle of the kernel tests and of the
// benchmark's check: every flash kernel is checked against it.
//
// Arrays are host doubles laid out as the tensors they stand for, addressed with p's strides:
// q[b * q_batch_stride + i * q_seq_stride + h * q_head_stride + d], and so for k, v, dO (p's do_
// strides), o, dq, dk, dv; lse is [B, Hq, Nq] contiguous. The sizes, softmax_scale, causal,
// block_mask (host memory), dropout_p, seed and offset of p are honoured through
// attention_allowed and attention_dropout_keep, exactly as the kernels do; p's pointers,
// workspace and dtype are not used. A row that sees no key gets O = 0, LSE = -inf, dQ = 0.
//
// heads lists the (batch, query head) pairs to compute, so that a check can afford one head of
// a large problem; empty means every head. O, LSE and dQ rows of the listed heads are written;
// the dK and dV rows of their kv heads get the sum over the listed query heads only (list every
// query head of a GQA group for the full gradient of its kv head). Nothing else is written.
// The work is split over threads by rows; results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/attention/params.h"

namespace fg {

struct AttentionHead {
  int64_t b = 0, h = 0;  // batch, query head
};

// O and LSE.
void attention_reference_forward(const AttentionParams& p, const double* q, const double* k,
                                 const double* v, double* o, double* lse,
                                 const std::vector<AttentionHead>& heads = {});

// dQ, dK and dV for the upstream gradient dO (the forward is recomputed). D_i is the exact
// sum_j P_ij dP_ij Z_ij, unless o_stored is given (addressed like o): then D_i = rowsum(dO_i *
// o_stored_i), as the kernels form it from the output they stored. A check of a 16-bit kernel
// passes its own output there: where D_i cancels dP exactly (a row that sees one key: dQ_i = 0),
// the output's rounding is all that dQ_i holds, and the exact sum would call that an error.
void attention_reference_backward(const AttentionParams& p, const double* q, const double* k,
                                  const double* v, const double* dO, double* dq, double* dk,
                                  double* dv, const std::vector<AttentionHead>& heads = {},
                                  const double* o_stored = nullptr);

}  // namespace fg
