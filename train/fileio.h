// Small file helpers for checkpoints and data: whole-file reads with clear errors, atomic
// writes, and a content hash.
#pragma once
#include <cstdint>
#include <string>

namespace fg::train {

// The whole file as bytes. Throws fg::Error naming `what` and the path when it cannot be read.
std::string read_file(const std::string& path, const std::string& what = "file");
bool file_exists(const std::string& path);

// Writes `data` to `path` atomically: a temporary file in the same directory is written,
// fsync'ed and renamed over `path` (then the directory is fsync'ed), so a reader (or a crash)
// sees either the old file or the complete new one, never a partial one. Creates missing
// parent directories.
void write_file_atomic(const std::string& path, const std::string& data);

// 64-bit FNV-1a of the bytes, as 16 lowercase hex digits: a cheap check that a checkpoint's
// files are the ones its JSON describes (catches truncation, corruption and mixed saves).
std::string fnv1a64_hex(const std::string& data);

}  // namespace fg::train
