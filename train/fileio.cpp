// File helpers: reads with clear errors, atomic writes (temp file + fsync + rename), FNV-1a.
#include "train/fileio.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace fg::train {

namespace fs = std::filesystem;

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  FG_CHECK(fs::exists(path, ec), what, " '", path, "' does not exist");
  FG_CHECK(!fs::is_directory(path, ec), what, " '", path, "' is a directory, not a file");
  std::ifstream f(path, std::ios::binary);
  FG_CHECK(f.good(), what, " '", path, "' cannot be opened: ", std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  FG_CHECK(!f.bad(), what, " '", path, "' could not be read");
  return ss.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

void write_file_atomic(const std::string& path, const std::string& data) {
  fs::path target(path);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  fs::create_directories(dir, ec);
  FG_CHECK(!ec, "cannot create directory '", dir.string(), "': ", ec.message());
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp." +
                            std::to_string(::getpid()))).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  FG_CHECK(fd >= 0, "cannot create '", tmp, "': ", std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;  // e.g. Ctrl-C arrived: keep writing
    if (w <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(str("cannot write '", tmp, "': ", std::strerror(err)));
    }
    done += size_t(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot flush '", tmp, "' to disk: ", std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err)));
  }
  // Make the rename itself durable.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

int remove_stale_temporaries(const std::string& dir) {
  const std::string mine = ".tmp." + std::to_string(::getpid());
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const size_t at = n.rfind(".tmp.");
    if (n.empty() || n[0] != '.' || at == std::string::npos || at == 0) continue;
    const std::string pid = n.substr(at + 5);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (n.compare(at, std::string::npos, mine) == 0) continue;
    std::error_code rm;
    if (e.is_regular_file(rm) && fs::remove(e.path(), rm)) ++removed;
  }
  return removed;
}

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& purpose) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  FG_CHECK(!ec, "cannot create directory '", dir, "': ", ec.message());
  const std::string path = (fs::path(dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  FG_CHECK(fd_ >= 0, "cannot open the lock file '", path, "': ", std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {0};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, size_t(n)) : std::string("?");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    FG_CHECK(err != EWOULDBLOCK, "'", dir, "' is in use by another flashgrad process (pid ",
             holder, "); wait for it to finish, or use another --out directory");
    throw Error(str("cannot lock '", path, "': ", std::strerror(err)));
  }
  const std::string pid = std::to_string(::getpid()) + ", " + purpose + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    ssize_t w = ::pwrite(fd_, pid.data(), pid.size(), 0);
    (void)w;  // the pid is only for the message above
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

std::string fnv1a64_hex(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace fg::train
