// Tokenizers for character-level language modelling.
//
//   CharTokenizer  one token per Unicode character (code point) of the training text; the
//                  vocabulary is the sorted set of characters in the corpus and is stored in
//                  the checkpoint. Bytes that are not valid UTF-8 are read as the Latin-1
//                  character of the same value.
//   ByteTokenizer  one token per byte, vocabulary 256; needs no vocabulary and encodes anything.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace fg::train {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string type() const = 0;  // "char" or "byte"
  virtual int64_t vocab_size() const = 0;
  // Throws fg::Error naming the first character the vocabulary lacks.
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual nlohmann::json to_json() const = 0;
  // Rebuilds a tokenizer from to_json(); throws on anything malformed.
  static std::unique_ptr<Tokenizer> from_json(const nlohmann::json& j);
  // "char": the vocabulary of `corpus`; "byte": all bytes.
  static std::unique_ptr<Tokenizer> create(const std::string& type, const std::string& corpus);
};

class ByteTokenizer : public Tokenizer {
 public:
  std::string type() const override { return "byte"; }
  int64_t vocab_size() const override { return 256; }
  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  nlohmann::json to_json() const override;
};

class CharTokenizer : public Tokenizer {
 public:
  explicit CharTokenizer(std::vector<uint32_t> chars);  // sorted, unique code points
  static CharTokenizer build(const std::string& corpus);
  std::string type() const override { return "char"; }
  int64_t vocab_size() const override { return int64_t(chars_.size()); }
  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  nlohmann::json to_json() const override;
  const std::vector<uint32_t>& chars() const { return chars_; }

 private:
  std::vector<uint32_t> chars_;
  std::unordered_map<uint32_t, int32_t> index_;
};

// UTF-8 helpers (lenient decoding as described above).
std::vector<uint32_t> utf8_decode(const std::string& s);
std::string utf8_encode(uint32_t code_point);

}  // namespace fg::train
