// Training data: a token stream split 90/10 into train and validation parts, and seeded
// random batches of (input, next-token target) windows.
//
// Batches come from a counter-based generator (Philox, the same as the rest of flashgrad):
// batch k of a run depends only on the seed and the generator's offset, so storing the
// offset in a checkpoint is enough to resume with exactly the batches a run without a pause
// would have seen.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace fg::train {

struct TextSplits {
  std::vector<int32_t> train, val;
};

// The first (1 - val_fraction) of the tokens train, the rest validate. Throws, naming `source`,
// when either part is shorter than block_size + 1 tokens (one input window and its target),
// saying how many tokens the fraction needs and which --val-fraction (or --block-size) fits
// the text instead. The check takes O(log n) time whatever the fraction.
TextSplits split_tokens(const std::vector<int32_t>& tokens, int64_t block_size,
                        double val_fraction, const std::string& source);

struct Batch {
  Tensor x, y;  // int64 [B, T]; y is x shifted by one token
};

// B windows of T + 1 tokens at uniform random starts, drawn with one offset of `gen`.
//
// Data parallel: rank r of `world` ranks, each with the same generator state, takes windows
// r B .. r B + B - 1 of the step's global batch of world x B windows. The ranks' batches put
// side by side are exactly the batch of one process with batch world x B (and world 1), so
// N GPUs at batch B see what one GPU sees at batch N B, step for step.
Batch get_batch(const std::vector<int32_t>& tokens, int64_t B, int64_t T, Generator& gen,
                Device device, int64_t rank = 0, int64_t world = 1);

}  // namespace fg::train
