// Train/validation split and random batches.
#include "train/data.h"

#include <cmath>

namespace fg::train {

TextSplits split_tokens(const std::vector<int32_t>& tokens, int64_t block_size,
                        double val_fraction, const std::string& source) {
  FG_CHECK(val_fraction > 0 && val_fraction < 1, "val_fraction must be in (0, 1), got ", val_fraction);
  const int64_t n = int64_t(tokens.size());
  FG_CHECK(n > 0, "data '", source, "' is empty; give a text file with some content");
  const int64_t n_train = int64_t(std::floor(double(n) * (1 - val_fraction)));
  const int64_t n_val = n - n_train;
  // The smallest n whose both parts hold block_size + 1 tokens.
  int64_t need = block_size + 1;
  while (int64_t(std::floor(double(need) * (1 - val_fraction))) < block_size + 1 ||
         need - int64_t(std::floor(double(need) * (1 - val_fraction))) < block_size + 1)
    ++need;
  FG_CHECK(n_train >= block_size + 1 && n_val >= block_size + 1, "data '", source,
           "' is too short: ", n, " tokens, but a context of ", block_size, " needs at least ",
           need, " (both the ", int(std::lround((1 - val_fraction) * 100)), "% train and the ",
           int(std::lround(val_fraction * 100)),
           "% validation part must hold block_size + 1 tokens); use a longer file or a smaller "
           "--block-size");
  TextSplits s;
  s.train.assign(tokens.begin(), tokens.begin() + n_train);
  s.val.assign(tokens.begin() + n_train, tokens.end());
  return s;
}

Batch get_batch(const std::vector<int32_t>& tokens, int64_t B, int64_t T, Generator& gen,
                Device device) {
  const int64_t n = int64_t(tokens.size());
  FG_CHECK(B > 0 && T > 0 && n >= T + 1, "get_batch: need B > 0, T > 0 and at least T + 1 = ",
           T + 1, " tokens, got B=", B, " T=", T, " and ", n, " tokens");
  const uint64_t starts = uint64_t(n - T);  // windows [s, s + T] with s in [0, n - T - 1]
  const uint64_t offset = gen.next_offset();
  std::vector<int64_t> x(size_t(B * T)), y(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t s = int64_t(gen.random_u64(offset, uint64_t(b)) % starts);
    for (int64_t t = 0; t < T; ++t) {
      x[size_t(b * T + t)] = tokens[size_t(s + t)];
      y[size_t(b * T + t)] = tokens[size_t(s + t + 1)];
    }
  }
  TensorOptions o = TensorOptions(DType::i64).device(device);
  return {from_vector<int64_t>(x, {B, T}, o), from_vector<int64_t>(y, {B, T}, o)};
}

}  // namespace fg::train
