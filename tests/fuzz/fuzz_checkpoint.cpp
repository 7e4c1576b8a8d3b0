// libFuzzer target for the checkpoint reader: checkpoint.json (JSON, integrity hash, config,
// tokenizer, file table) and the safetensors files it names (header JSON, dtypes, shapes,
// offsets, data), through the same parse_checkpoint that `flashgrad sample` and `train
// --resume` use. Every input must end in a loaded checkpoint or an fg::Error; anything else
// (a crash, a sanitizer report, another exception type, a hang) is a bug.
//
// Input layout (tests/fuzz/make_seeds.py packs real checkpoints this way):
//   byte 0          flags: bit 0 rewrite the file table's sizes and hashes to match the parts
//                   below, bit 1 rewrite the integrity hash; so that mutated inputs also get
//                   past those checks to the parsers behind them
//   u32 LE n, n bytes   checkpoint.json
//   u32 LE m, m bytes   the weights file
//   the rest            the optimizer file
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/fileio.h"
#include "train/safetensors.h"

namespace {

bool take(const uint8_t*& p, size_t& left, std::string& out) {
  if (left < 4) return false;
  const uint32_t n = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  p += 4;
  left -= 4;
  if (n > left) return false;
  out.assign(reinterpret_cast<const char*>(p), n);
  p += n;
  left -= n;
  return true;
}

// Makes the file table and the integrity hash agree with the parts, where the JSON allows.
std::string fix_up(const std::string& text, uint8_t flags, const std::string& weights,
                   const std::string& optimizer) {
  using json = nlohmann::json;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return text;
  if (flags & 1) {
    json& files = j["files"];
    if (!files.is_object()) files = json::object();
    for (auto [key, bytes] : {std::pair<const char*, const std::string*>{"weights", &weights},
                              {"optimizer", &optimizer}}) {
      json& e = files[key];
      if (!e.is_object()) e = json::object();
      if (!e.contains("name")) e["name"] = std::string(key) + ".safetensors";
      e["bytes"] = bytes->size();
      e["fnv1a64"] = fg::train::fnv1a64_hex(*bytes);
    }
  }
  if (flags & 2) {
    json body = j;
    body.erase("integrity");
    j["integrity"] = {{"fnv1a64", fg::train::fnv1a64_hex(body.dump())}};
  }
  return j.dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const uint8_t* p = data + 1;
  size_t left = size - 1;
  std::string text, weights;
  if (!take(p, left, text) || !take(p, left, weights)) return 0;
  const std::string optimizer(reinterpret_cast<const char*>(p), left);
  try {
    fg::train::safetensors_parse(weights, "weights");
  } catch (const fg::Error&) {
  }
  try {
    text = fix_up(text, flags, weights, optimizer);
    fg::train::parse_checkpoint("fuzz", text, /*with_optimizer=*/true,
                                [&](const std::string&, const char* what) {
                                  return std::string(what) == "weights" ? weights : optimizer;
                                });
  } catch (const fg::Error&) {
  }
  return 0;
}
