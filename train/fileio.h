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

// Removes the temporary files write_file_atomic leaves behind when a process is killed in the
// middle of a write (".<name>.tmp.<pid>" in `dir`), except those of this process. Call it only
// while holding the directory's DirectoryLock: then no other live writer can own them.
// Returns how many were removed.
int remove_stale_temporaries(const std::string& dir);

// An advisory lock on a directory (flock on "<dir>/.lock", which holds the owner's pid), held
// for the object's lifetime and released by the kernel if the process dies. A second process
// asking for the same directory gets fg::Error naming the holder's pid. `purpose` says what
// the holder is doing, for that message. Creates the directory when missing.
class DirectoryLock {
 public:
  DirectoryLock(const std::string& dir, const std::string& purpose);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

// 64-bit FNV-1a of the bytes, as 16 lowercase hex digits: a cheap check that a checkpoint's
// files are the ones its JSON describes (catches truncation, corruption and mixed saves).
std::string fnv1a64_hex(const std::string& data);

}  // namespace fg::train
