// The default training text: the fortune cookies of the distribution's `fortunes` package.
#pragma once
#include <string>

namespace fg::train {

// Concatenates the fortune files of `fortunes_dir` in sorted name order (the *.u8 files when
// there are any, else every plain file that is not a *.dat index), drops the lone "%" lines
// that separate fortunes, and writes the text atomically to `out_path` (about 2.5 MB for the
// Debian package). Returns the number of bytes written. Throws when no fortunes are found,
// saying which package to install.
size_t build_fortunes_corpus(const std::string& out_path,
                             const std::string& fortunes_dir = "/usr/share/games/fortunes");

// The path of the default corpus, data/fortunes.txt (relative to the working directory),
// built first when missing. `log` receives one line when it builds.
std::string default_corpus(std::string* log = nullptr);

}  // namespace fg::train
