// Train/validation split and random batches.
#include "train/data.h"

#include <algorithm>
#include <cmath>

namespace fg::train {

namespace {

// The train part of n tokens; the rest validates. Both the split and the checks below use it.
int64_t train_part(int64_t n, double val_fraction) {
  return int64_t(std::floor(double(n) * (1 - val_fraction)));
}

bool both_parts_hold(int64_t n, int64_t window, double val_fraction) {
  const int64_t t = train_part(n, val_fraction);
  return t >= window && n - t >= window;
}

// The fewest tokens whose train and validation parts both hold `window` tokens, or -1 when not
// even 2^62 do. Both parts grow with n (the train part by 0 or 1 per token, the validation
// part by the rest), so the test is monotone and a binary search finds the edge.
int64_t min_tokens(int64_t window, double val_fraction) {
  int64_t lo = 2 * window - 1, hi = int64_t(1) << 62;  // fails at lo; below 2 * window, all do
  if (!both_parts_hold(hi, window, val_fraction)) return -1;
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (both_parts_hold(mid, window, val_fraction) ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace

TextSplits split_tokens(const std::vector<int32_t>& tokens, int64_t block_size,
                        double val_fraction, const std::string& source) {
  FG_CHECK(val_fraction > 0 && val_fraction < 1, "--val-fraction must be a number in (0, 1), got ",
           val_fraction);
  FG_CHECK(block_size > 0, "split_tokens: block_size must be positive, got ", block_size);
  const int64_t n = int64_t(tokens.size());
  FG_CHECK(n > 0, "data '", source, "' is empty; give a text file with some content");
  const int64_t window = block_size + 1;  // one input window and its target
  if (!both_parts_hold(n, window, val_fraction)) {
    const int64_t need = min_tokens(window, val_fraction);
    const std::string at_least =
        need > 0 ? str("at least ", need, " tokens") : std::string("more than 2^62 tokens");
    const std::string what = str("data '", source, "' is too short: ", n, " tokens, but a context of ",
                                 block_size, " needs ", window, " in each of the train and "
                                 "validation parts (", at_least, " at --val-fraction ",
                                 val_fraction, ")");
    if (n < 2 * window) {
      const int64_t largest_block = n / 2 - 1;
      throw Error(largest_block >= 1
                      ? str(what, "; use --block-size ", largest_block, " or less, or a longer text")
                      : str(what, "; use a longer text"));
    }
    // Some fraction fits: validation must hold `window` tokens (val_fraction above
    // (window - 1) / n) and so must training (val_fraction at most 1 - window / n). Suggest
    // the default 0.1 moved into that interval, rounded inwards to three decimals.
    const double lo = std::ceil(double(window) / double(n) * 1000) / 1000;
    const double hi = std::floor((1 - double(window) / double(n)) * 1000) / 1000;
    const double pick = std::min(std::max(0.1, lo), hi);
    throw Error(lo <= hi && both_parts_hold(n, window, pick)
                    ? str(what, "; use --val-fraction ", pick, " (any value from ", lo, " to ", hi,
                          " fits this text), a smaller --block-size or a longer text")
                    : str(what, "; use --val-fraction 0.5, a smaller --block-size or a longer text"));
  }
  const int64_t n_train = train_part(n, val_fraction);
  TextSplits s;
  s.train.assign(tokens.begin(), tokens.begin() + n_train);
  s.val.assign(tokens.begin() + n_train, tokens.end());
  return s;
}

Batch get_batch(const std::vector<int32_t>& tokens, int64_t B, int64_t T, Generator& gen,
                Device device, int64_t rank, int64_t world) {
  const int64_t n = int64_t(tokens.size());
  FG_CHECK(B > 0 && T > 0 && n >= T + 1, "get_batch: need B > 0, T > 0 and at least T + 1 = ",
           T + 1, " tokens, got B=", B, " T=", T, " and ", n, " tokens");
  FG_CHECK(world >= 1 && rank >= 0 && rank < world, "get_batch: rank ", rank,
           " is not one of the ", world, " ranks (0 .. world - 1)");
  const uint64_t starts = uint64_t(n - T);  // windows [s, s + T] with s in [0, n - T - 1]
  const uint64_t offset = gen.next_offset();
  std::vector<int64_t> x(size_t(B * T)), y(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = int64_t(gen.random_u64(offset, uint64_t(rank * B + b)) % starts);
    for (int64_t t = 0; t < T; ++t) {
      x[size_t(b * T + t)] = tokens[size_t(s + t)];
      y[size_t(b * T + t)] = tokens[size_t(s + t + 1)];
    }
  }
  TensorOptions o = TensorOptions(DType::i64).device(device);
  return {from_vector<int64_t>(x, {B, T}, o), from_vector<int64_t>(y, {B, T}, o)};
}

}  // namespace fg::train
