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

// The length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 when it is not one
// (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, or cut short).
size_t utf8_length(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned cp;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

bool is_control(unsigned char c) { return (c < 0x20 && c != '\n') || c == 0x7F; }
}  // namespace

std::string clean_text(const std::string& raw) {
  std::string out;
  out.reserve(raw.size());
  size_t last = std::string::npos;  // where the last kept character starts in `out`
  for (size_t i = 0; i < raw.size();) {
    const unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c == '\b') {  // overstrike: the next character replaces the last one kept
      if (last != std::string::npos) out.resize(last);
      last = std::string::npos;
      ++i;
      continue;
    }
    if (c == '\t') {
      out.push_back(' ');
      last = out.size() - 1;
      ++i;
      continue;
    }
    if (is_control(c)) {
      ++i;
      continue;
    }
    const size_t n = utf8_length(raw, i);
    if (n == 0) {
      ++i;
      continue;
    }
    // C1 control characters (U+0080 to U+009F) go too.
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(raw[i + 1]) < 0xA0) {
      i += 2;
      continue;
    }
    last = c == '\n' ? std::string::npos : out.size();
    out.append(raw, i, n);
    i += n;
  }
  return out;
}

void check_looks_like_text(const std::string& bytes, const std::string& path) {
  const std::string hint = "; flashgrad trains on text files (UTF-8 or ASCII)";
  FG_CHECK(bytes.find('\0') == std::string::npos, "'", path, "' holds NUL bytes: it looks like "
           "a binary file, not text", hint);
  const size_t n = std::min<size_t>(bytes.size(), 64 * 1024);
  size_t bad = 0;
  for (size_t i = 0; i < n;) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    const size_t len = utf8_length(bytes, i);
    if (len == 0 && i + 4 > n) break;  // a sequence cut by the 64 KiB window
    if (len == 0 || (is_control(c) && c != '\t' && c != '\r')) ++bad;
    i += len == 0 ? 1 : len;
  }
  FG_CHECK(bad * 100 <= n, "'", path, "' does not look like text: ", bad, " of its first ", n,
           " bytes are control characters or invalid UTF-8", hint);
}

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
  text = clean_text(text);
  FG_CHECK(!text.empty(), "the fortune files in '", fortunes_dir, "' hold no text", hint);
  write_file_atomic(out_path, text);
  return text.size();
}

std::string default_corpus(std::string* log) {
  const std::string path = "data/fortunes.txt";
  if (file_exists(path)) {
    const std::string text = read_file(path, "the default corpus");
    if (clean_text(text) == text) return path;  // else: built before the cleaning; rebuild
  }
  size_t n = build_fortunes_corpus(path);
  if (log) *log = str("built the default corpus ", path, " (", n, " bytes) from /usr/share/games/fortunes");
  return path;
}

}  // namespace fg::train
