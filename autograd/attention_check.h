// The attention check behind `flashgrad gradcheck attention`: the flash attention node over a
// grid of its features, and its gradients against fp64 finite differences on a problem that
// crosses several tiles.
//
// Grid rows compare flash's O, dQ, dK, dV with a reference: for f64 and f32 the naive node
// (ordinary autograd ops) in the same dtype; for bf16 and f16 the fp64 reference of
// kernels/attention (cpu/reference.h) on the same rounded inputs, beside which the naive node
// in the same 16-bit dtype is measured too, for comparison. A row passes when the largest
// relative L2 error ||x - ref|| / ||ref|| of the four is under attention_check_bound; max_rel
// = max |x - ref| / max |ref| is reported as well.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace fg {

enum class AttentionCheckMask { none, sliding_window, global_local };
const char* attention_check_mask_name(AttentionCheckMask m);

struct AttentionCheckRow {
  DType dtype = DType::f64;
  int64_t D = 64, Nq = 64, Nk = 64, Hq = 2, Hkv = 2;  // batch 2
  bool causal = false;
  double dropout = 0.0;
  AttentionCheckMask mask = AttentionCheckMask::none;
  // 0: a batch of 2 of [N, H, D]. 1 or 2: packed sequences of different lengths through
  // varlen_attention (attention_check_varlen_offsets), against the fp64 reference run on each
  // sequence alone; Nq and Nk are then the packed totals.
  int varlen = 0;
};

// The cumulative offsets of a varlen row's queries (keys = false) or keys: set 1 holds five
// sequences of query lengths 37, 1, 64, 0, 20 and key lengths 53, 40, 64, 9, 0 (a single new
// token, an empty query, a sequence without keys); set 2 two of 16 x 100 and 70 x 5.
std::vector<int64_t> attention_check_varlen_offsets(int set, bool keys);

// Every dtype (f64, f32, bf16, f16) x head dim (32, 64, 128) x {64 x 64; causal 37 x 53;
// causal 77 x 45 with dropout and GQA; 100 x 100 MQA with dropout}; head dims 96 and 256 x
// {64 x 64; causal 77 x 45 with dropout and GQA} (with `cuda`, not f64 at 256, which has no
// CUDA kernel); then per dtype three block mask rows at D 64 (sliding window, causal window
// with dropout, global + local with GQA), and two varlen rows (set 1: D 64, causal, dropout,
// GQA; set 2: D 32, MQA). `quick` keeps head dims 32, 96, 128 and 256 to the first row.
std::vector<AttentionCheckRow> attention_check_grid(bool quick, bool cuda);

struct AttentionCheckError {
  double max_abs = 0, max_rel = 0, rel_l2 = 0;
};

struct AttentionCheckResult {
  AttentionCheckError flash[4];  // O, dQ, dK, dV against the reference
  AttentionCheckError naive[4];  // bf16/f16 only: the naive node in that dtype, same reference
  double worst = 0;              // the largest flash rel_l2
  double bound = 0;              // attention_check_bound
  bool ok = false;
};

// The bound on a row's worst rel_l2 for `dtype` on `device`'s kind of kernels: about 3x the
// worst row of the grid on the CPU and on the H100/H200 kernels (attention_check.cpp: the
// figures).
double attention_check_bound(DType dtype, Device device);

// One row on `device`, its inputs drawn from `gen` (normal values: q, k, v, then dO).
AttentionCheckResult attention_check_row(const AttentionCheckRow& row, Device device,
                                         Generator& gen);

// Flash's fp64 gradients against central finite differences of L = sum(O * R) (R a fixed
// random projection of the output) along random directions, one direction per input and
// 64-row tile: Q [1, 150, 2, D] and K, V [1, 170, 1, D], causal (the bottom-right diagonal
// crosses the tiles), dropout 0.2, MQA, so the tiles are 64, 64 and a partial one on both axes.
struct FiniteDifferenceCheck {
  char input = 'q';            // 'q', 'k' or 'v'
  int64_t row0 = 0, row1 = 0;  // the direction's rows [row0, row1)
  double numeric = 0, analytic = 0;  // the directional derivative both ways
  double scale = 0;      // |gradient| |direction| over those rows
  double rel_error = 0;  // |numeric - analytic| / scale
};
struct FiniteDifferenceResult {
  int64_t Nq = 0, Nk = 0, D = 0;
  std::vector<FiniteDifferenceCheck> checks;
  double worst = 0, bound = 0;
  bool ok = false;
};
FiniteDifferenceResult attention_finite_difference_check(Device device, int64_t D);

}  // namespace fg
