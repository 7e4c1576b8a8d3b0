// Builds data/fortunes.txt from /usr/share/games/fortunes (see train/corpus.h).
#include "train/corpus.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "train/fileio.h"

namespace fg::train {

namespace fs = std::filesystem;

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

size_t build_fortunes_corpus(const std::string& out_path, const std::string& fortunes_dir) {
  const std::string hint =
      "; install the fortunes package (apt-get install fortunes) or pass --data FILE";
  std::error_code ec;
  FG_CHECK(fs::is_directory(fortunes_dir, ec), "no fortunes directory '", fortunes_dir, "'", hint);
  std::vector<std::string> u8, plain;
  for (const auto& e : fs::directory_iterator(fortunes_dir, ec)) {
    if (!e.is_regular_file(ec)) continue;  // follows symlinks; skips subdirectories
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (ends_with(name, ".u8")) u8.push_back(e.path().string());
    else if (!ends_with(name, ".dat")) plain.push_back(e.path().string());
  }
  std::vector<std::string>& files = u8.empty() ? plain : u8;
  FG_CHECK(!files.empty(), "no fortune files in '", fortunes_dir, "'", hint);
  std::sort(files.begin(), files.end());

  std::string text;
  for (const auto& f : files) {
    std::string content = read_file(f, "fortune file");
    size_t pos = 0;
    while (pos < content.size()) {
      size_t nl = content.find('\n', pos);
      size_t end = nl == std::string::npos ? content.size() : nl;
      std::string_view line(content.data() + pos, end - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line != "%") {
        text.append(content, pos, end - pos);
        text.push_back('\n');
      }
      pos = end + 1;
    }
  }
  FG_CHECK(!text.empty(), "the fortune files in '", fortunes_dir, "' hold no text", hint);
  write_file_atomic(out_path, text);
  return text.size();
}

std::string default_corpus(std::string* log) {
  const std::string path = "data/fortunes.txt";
  if (file_exists(path)) return path;
  size_t n = build_fortunes_corpus(path);
  if (log) *log = str("built the default corpus ", path, " (", n, " bytes) from /usr/share/games/fortunes");
  return path;
}

}  // namespace fg::train
