// Files around training: the directory lock, stale temporaries, text cleaning and the check
// that training data is text.
#include "support/test_util.h"
#include "support/train_fixtures.h"

#include <unistd.h>

#include <filesystem>

#include "train/corpus.h"
#include "train/fileio.h"

using namespace fg;
using namespace fg::train;
namespace fs = std::filesystem;

TEST_CASE("DirectoryLock: one holder at a time, released at scope exit", "[files]") {
  test::TempDir d;
  const std::string dir = d / "out";
  {
    DirectoryLock a(dir, "training");
    REQUIRE(fs::exists(dir + "/.lock"));
    REQUIRE_THROWS_WITH(DirectoryLock(dir, "training"),
                        Catch::Contains("in use by another flashgrad process") &&
                            Catch::Contains(std::to_string(::getpid())));
  }
  REQUIRE_NOTHROW(DirectoryLock(dir, "training"));
}

TEST_CASE("remove_stale_temporaries removes other processes' partial writes only", "[files]") {
  test::TempDir d;
  const std::string dir = d / "ck";
  fs::create_directories(dir);
  const std::string mine = ".model-00000004.safetensors.tmp." + std::to_string(::getpid());
  for (const char* n : {".model-00000004.safetensors.tmp.1", ".checkpoint.json.tmp.99999999"})
    test::write_text(dir + "/" + n, "partial");
  test::write_text(dir + "/" + mine, "in progress");
  test::write_text(dir + "/model-00000004.safetensors", "kept");
  test::write_text(dir + "/.notes.tmp.x", "kept: not a pid");
  REQUIRE(remove_stale_temporaries(dir) == 2);
  REQUIRE(fs::exists(dir + "/" + mine));
  REQUIRE(fs::exists(dir + "/model-00000004.safetensors"));
  REQUIRE(fs::exists(dir + "/.notes.tmp.x"));
  REQUIRE_FALSE(fs::exists(dir + "/.model-00000004.safetensors.tmp.1"));
}

TEST_CASE("clean_text keeps printable UTF-8 and resolves overstrikes", "[files]") {
  CHECK(clean_text("plain text\nline two\n") == "plain text\nline two\n");
  CHECK(clean_text("bell\a here") == "bell here");
  CHECK(clean_text("_\bb_\bo_\bl_\bd") == "bold");        // underlined
  CHECK(clean_text("B\bBo\bol\bld\bd") == "Bold");        // emboldened
  CHECK(clean_text("tab\there\r\n") == "tab here\n");
  CHECK(clean_text("\x1b[1mesc\x1b[0m") == "[1mesc[0m");  // ESC goes, its printable tail stays
  CHECK(clean_text("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");  // é €
  CHECK(clean_text("bad \xe9 latin-1 \xff\xfe and \xc3") == "bad  latin-1  and ");
  CHECK(clean_text("c1 \xc2\x85 control") == "c1  control");
  CHECK(clean_text("\bstart") == "start");
  CHECK(clean_text("line\n\bnext") == "line\nnext");  // a backspace never eats a newline
}

TEST_CASE("check_looks_like_text refuses binary files", "[files]") {
  REQUIRE_NOTHROW(check_looks_like_text(test::toy_corpus(), "toy.txt"));
  REQUIRE_NOTHROW(check_looks_like_text("caf\xc3\xa9\tand tabs\r\n", "utf8.txt"));
  std::string elf = "\x7f" "ELF";
  elf.push_back('\0');
  elf += "rest of a binary";
  REQUIRE_THROWS_WITH(check_looks_like_text(elf, "/bin/ls"), Catch::Contains("NUL") &&
                                                                 Catch::Contains("/bin/ls"));
  std::string noisy = test::toy_corpus();
  for (size_t i = 0; i < noisy.size(); i += 50) noisy[i] = '\x01';
  REQUIRE_THROWS_WITH(check_looks_like_text(noisy, "noisy.bin"), Catch::Contains("does not look like text"));
  if (fs::exists("/bin/ls")) {
    REQUIRE_THROWS_AS(check_looks_like_text(read_file("/bin/ls"), "/bin/ls"), Error);
  }
}
