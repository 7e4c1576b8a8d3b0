// Fixtures for the tests of train/: a scratch directory, a toy corpus and a tiny, fast config.
#pragma once
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "train/config.h"
#include "train/trainer.h"

namespace fg::test {

// A fresh empty directory under the system temp dir, removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("flashgrad_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// Some English-like text with structure a tiny model learns quickly.
inline std::string toy_corpus() {
  std::string s;
  const char* lines[] = {"the cat sat on the mat.\n", "a dog ate the bone.\n",
                         "the sun is hot and the sea is blue.\n", "we like to read good books.\n"};
  for (int i = 0; i < 120; ++i) s += lines[(i * 7 + i / 3) % 4];
  return s;
}

// A tiny, fast config on a toy corpus.
inline train::TrainConfig toy_config(const std::string& data) {
  train::TrainConfig c;
  c.preset = "test";
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 32;
  c.block_size = 16;
  c.batch_size = 4;
  c.steps = 20;
  c.warmup = 3;
  c.lr = 3e-3;
  c.min_lr = 3e-4;
  c.eval_interval = 100;
  c.eval_batches = 2;
  c.log_interval = 100;
  c.sample_tokens = 0;
  c.device = "cpu";
  c.data = data;
  c.dropout = 0.1;  // exercises the dropout RNG in the resume test
  return c;
}

inline train::RunOptions quiet_run(const std::string& dir, std::ostream& log) {
  train::RunOptions r;
  r.out_dir = dir;
  r.out = &log;
  return r;
}

}  // namespace fg::test
