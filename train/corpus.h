// The default training text: the fortune cookies of the distribution's `fortunes` package.
#pragma once
#include <string>

namespace fg::train {

// Concatenates the fortune files of `fortunes_dir` in sorted name order (the *.u8 files when
// there are any, else every plain file that is not a *.dat index), drops the lone "%" lines
// that separate fortunes, cleans the text to printable UTF-8 (clean_text), and writes it
// atomically to `out_path` (about 2.5 MB for the Debian package). Returns the number of bytes
// written. Throws when no fortunes are found, saying which package to install.
size_t build_fortunes_corpus(const std::string& out_path,
                             const std::string& fortunes_dir = "/usr/share/games/fortunes");

// Printable UTF-8 text from raw text: overstrikes ("_\bx", "x\bx": underline and bold on old
// terminals) keep the character struck last; tabs become spaces; carriage returns, other
// control characters (BEL, ESC, ...) and DEL are dropped; bytes that are not valid UTF-8 are
// dropped. Newlines and every valid non-control code point are kept.
std::string clean_text(const std::string& raw);

// Throws fg::Error when `bytes` (the contents of `path`) do not look like text: a NUL byte, or
// more than 1% of bytes that are control characters or invalid UTF-8 in its first 64 KiB.
void check_looks_like_text(const std::string& bytes, const std::string& path);

// The path of the default corpus, data/fortunes.txt (relative to the working directory),
// built first when missing, and built again when it predates the cleaning (holds control
// characters). `log` receives one line when it builds.
std::string default_corpus(std::string* log = nullptr);

}  // namespace fg::train
