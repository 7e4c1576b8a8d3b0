// Char-level (Unicode code points) and byte-level tokenizers, with JSON round trips.
#include "train/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "train/json_read.h"

namespace fg::train {

using json = nlohmann::json;

std::vector<uint32_t> utf8_decode(const std::string& s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = len > 0 && i + size_t(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      if ((p[i + size_t(k)] & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (p[i + size_t(k)] & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
      ok = false;
    if (!ok) {  // not UTF-8: the Latin-1 character of this byte
      out.push_back(c);
      i += 1;
    } else {
      out.push_back(cp);
      i += size_t(len);
    }
  }
  return out;
}

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(char(cp));
  } else if (cp < 0x800) {
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(char(0xE0 | (cp >> 12)));
    s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(char(0xF0 | (cp >> 18)));
    s.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
  return s;
}

namespace {
std::string describe_char(uint32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", cp);
  if (cp >= 0x20 && cp != 0x7F) return "'" + utf8_encode(cp) + "' (" + buf + ")";
  return buf;
}
}  // namespace

// ---- byte ----

std::vector<int32_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  s.reserve(ids.size());
  for (int32_t id : ids) {
    FG_CHECK(id >= 0 && id < 256, "ByteTokenizer::decode: token ", id, " is outside [0, 256)");
    s.push_back(char(id));
  }
  return s;
}

json ByteTokenizer::to_json() const { return {{"type", "byte"}, {"vocab_size", 256}}; }

// ---- char ----

CharTokenizer::CharTokenizer(std::vector<uint32_t> chars) : chars_(std::move(chars)) {
  FG_CHECK(!chars_.empty(), "CharTokenizer: the vocabulary is empty");
  for (size_t i = 0; i < chars_.size(); ++i) {
    FG_CHECK(chars_[i] <= 0x10FFFF, "CharTokenizer: ", chars_[i], " is not a code point");
    FG_CHECK(i == 0 || chars_[i - 1] < chars_[i],
             "CharTokenizer: the vocabulary must be sorted and free of duplicates");
    index_[chars_[i]] = int32_t(i);
  }
}

CharTokenizer CharTokenizer::build(const std::string& corpus) {
  std::vector<uint32_t> cps = utf8_decode(corpus);
  std::set<uint32_t> set(cps.begin(), cps.end());
  FG_CHECK(!set.empty(), "CharTokenizer: cannot build a vocabulary from empty text");
  return CharTokenizer(std::vector<uint32_t>(set.begin(), set.end()));
}

std::vector<int32_t> CharTokenizer::encode(const std::string& text) const {
  std::vector<uint32_t> cps = utf8_decode(text);
  std::vector<int32_t> ids(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    auto it = index_.find(cps[i]);
    FG_CHECK(it != index_.end(), "the character ", describe_char(cps[i]),
             " is not in the tokenizer's vocabulary of ", chars_.size(),
             " characters (built from the training text); remove it or train with --tokenizer byte");
    ids[i] = it->second;
  }
  return ids;
}

std::string CharTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  for (int32_t id : ids) {
    FG_CHECK(id >= 0 && id < vocab_size(), "CharTokenizer::decode: token ", id,
             " is outside the vocabulary [0, ", vocab_size(), ")");
    s += utf8_encode(chars_[size_t(id)]);
  }
  return s;
}

json CharTokenizer::to_json() const {
  return {{"type", "char"}, {"vocab_size", chars_.size()}, {"code_points", chars_}};
}

// ---- factory ----

std::unique_ptr<Tokenizer> Tokenizer::from_json(const json& j) {
  try {
    std::string type = j.at("type").get<std::string>();
    std::unique_ptr<Tokenizer> t;
    if (type == "byte") {
      t = std::make_unique<ByteTokenizer>();
    } else if (type == "char") {
      t = std::make_unique<CharTokenizer>(json_numbers<uint32_t>(j.at("code_points"), "tokenizer: code_points"));
    } else {
      throw Error(str("tokenizer: unknown type '", type, "' (expected char or byte)"));
    }
    const int64_t vocab_size = json_number<int64_t>(j.at("vocab_size"), "tokenizer: vocab_size");
    FG_CHECK(vocab_size == t->vocab_size(), "tokenizer: vocab_size ", vocab_size,
             " does not match its ", t->vocab_size(), " entries");
    return t;
  } catch (const json::exception& e) {
    throw Error(str("tokenizer: malformed description (", e.what(), ")"));
  }
}

std::unique_ptr<Tokenizer> Tokenizer::create(const std::string& type, const std::string& corpus) {
  if (type == "byte") return std::make_unique<ByteTokenizer>();
  if (type == "char") return std::make_unique<CharTokenizer>(CharTokenizer::build(corpus));
  throw Error(str("tokenizer: unknown type '", type, "' (use char or byte)"));
}

}  // namespace fg::train
