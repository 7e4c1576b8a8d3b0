// TrainConfig: presets, validation and JSON.
#include "train/config.h"

#include <cerrno>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "train/json_read.h"

namespace fg::train {

using json = nlohmann::json;

nn::GPTConfig TrainConfig::model_config(int64_t vocab_size) const {
  return nn::GPTConfig()
      .vocab_size(vocab_size)
      .block_size(block_size)
      .n_layer(n_layer)
      .n_head(n_head)
      .n_kv_head(n_kv_head)
      .n_embd(n_embd)
      .dropout(dropout)
      .bias(bias)
      .attn(attention_impl_from_string(attn))
      .seed(seed);
}

// ---------------------------------------------------------------------------------------------
// Ranges

NumberRange NumberRange::whole(std::string flag, int64_t lo, int64_t hi) {
  NumberRange r;
  r.flag = std::move(flag);
  r.kind = Kind::whole;
  r.lo = double(lo);
  r.hi = double(hi);
  return r;
}

NumberRange NumberRange::unsigned_whole(std::string flag) {
  NumberRange r;
  r.flag = std::move(flag);
  r.kind = Kind::unsigned_whole;
  r.lo = 0;
  r.hi = 18446744073709551615.0;
  return r;
}

NumberRange NumberRange::real(std::string flag, double lo, double hi, bool lo_open, bool hi_open) {
  NumberRange r;
  r.flag = std::move(flag);
  r.kind = Kind::real;
  r.lo = lo;
  r.hi = hi;
  r.lo_open = lo_open;
  r.hi_open = hi_open;
  return r;
}

bool NumberRange::accepts(double v) const {
  if (!std::isfinite(v)) return false;
  if (kind != Kind::real && v != std::floor(v)) return false;
  return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
}

std::string NumberRange::describe() const {
  switch (kind) {
    case Kind::unsigned_whole:
      return "a whole number from 0 to 18446744073709551615";
    case Kind::whole:
      return str("a whole number from ", int64_t(lo), " to ", int64_t(hi));
    case Kind::real:
      break;
  }
  if (std::isinf(hi)) return str("a finite number ", lo_open ? "> " : ">= ", lo);
  return str("a number in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
}

std::string NumberRange::refusal(const std::string& value) const {
  return str(flag, " must be ", describe(), ", got ", value.empty() ? "''" : value);
}

std::string NumberRange::check_text(const std::string& text, std::string* canonical) const {
  const std::string no = refusal(text);
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return no;
  errno = 0;
  char* end = nullptr;
  if (kind == Kind::real) {
    const double v = std::strtod(text.c_str(), &end);
    if (*end != '\0' || !accepts(v)) return no;
    if (canonical) *canonical = text;
    return "";
  }
  // Whole numbers: decimal digits with an optional sign, nothing else ("1e3", "0x10", "1.0"
  // are refused rather than read in a surprising way).
  const size_t digits = text[0] == '+' || text[0] == '-' ? 1 : 0;
  if (digits == text.size() ||
      text.find_first_not_of("0123456789", digits) != std::string::npos)
    return no;
  if (kind == Kind::unsigned_whole) {
    if (text[0] == '-') return no;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (errno == ERANGE) return no;
    if (canonical) *canonical = std::to_string(v);
    return "";
  }
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno == ERANGE || !accepts(double(v))) return no;
  if (canonical) *canonical = std::to_string(v);
  return "";
}

namespace {

// Every numeric setting of TrainConfig with its flag and accepted values.
const std::map<std::string, NumberRange>& ranges() {
  using R = NumberRange;
  constexpr int64_t kBillion = 1000000000;
  static const std::map<std::string, NumberRange> table = {
      {"n_layer", R::whole("--n-layer", 1, 1024)},
      {"n_head", R::whole("--n-head", 1, 65536)},
      {"n_kv_head", R::whole("--n-kv-head", 0, 65536)},
      {"n_embd", R::whole("--n-embd", 1, 1 << 20)},
      {"block_size", R::whole("--block-size", 1, 1 << 20)},
      {"dropout", R::real("--dropout", 0, 1, false, true)},
      {"val_fraction", R::real("--val-fraction", 0, 1, true, true)},
      {"batch_size", R::whole("--batch-size", 1, 1 << 30)},
      {"grad_accum", R::whole("--grad-accum", 1, 1 << 20)},
      {"steps", R::whole("--steps", 1, kBillion)},
      {"lr_decay_steps", R::whole("--lr-decay-steps", 0, kBillion)},
      {"warmup", R::whole("--warmup", 0, kBillion)},
      {"lr", R::real("--lr", 0, INFINITY, true, false)},
      {"min_lr", R::real("--min-lr", 0, INFINITY, false, false)},
      {"weight_decay", R::real("--weight-decay", 0, INFINITY, false, false)},
      {"beta1", R::real("--beta1", 0, 1, false, true)},
      {"beta2", R::real("--beta2", 0, 1, false, true)},
      {"eps", R::real("--eps", 0, INFINITY, true, false)},
      {"grad_clip", R::real("--grad-clip", 0, INFINITY, false, false)},
      {"eval_interval", R::whole("--eval-interval", 1, kBillion)},
      {"eval_batches", R::whole("--eval-batches", 1, 1000000)},
      {"log_interval", R::whole("--log-interval", 1, kBillion)},
      {"sample_tokens", R::whole("--sample-tokens", 0, 1000000)},
      {"seed", R::unsigned_whole("--seed")},
  };
  return table;
}

}  // namespace

const NumberRange* setting_range(const std::string& key) {
  auto it = ranges().find(key);
  return it == ranges().end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------------------------
// TrainConfig

void TrainConfig::validate() const {
  const json j = to_json(*this);
  for (const auto& [key, range] : ranges()) {
    if (range.kind == NumberRange::Kind::unsigned_whole) continue;  // any uint64 will do
    const double v = j.at(key).get<double>();
    // JSON writes non-finite numbers as null, so reals are printed by the stream.
    FG_CHECK(range.accepts(v),
             range.refusal(range.kind == NumberRange::Kind::real ? str(v) : j.at(key).dump()));
  }
  FG_CHECK(min_lr <= lr, "--min-lr must not exceed --lr, got --min-lr ", min_lr, " and --lr ", lr);
  FG_CHECK(lr * weight_decay < 1, "--weight-decay times --lr must be below 1 (each step "
           "multiplies the weights by 1 - lr * weight_decay), got ", weight_decay, " x ", lr);
  FG_CHECK(attn == "flash" || attn == "naive", "--attn must be flash or naive, got '", attn, "'");
  FG_CHECK(tokenizer == "char" || tokenizer == "byte", "--tokenizer must be char or byte, got '",
           tokenizer, "'");
  FG_CHECK(dtype == "fp32" || dtype == "bf16", "--dtype must be fp32 or bf16, got '", dtype, "'");
  model_config(1).validate();
}

std::vector<std::string> preset_names() { return {"tiny", "small"}; }

TrainConfig preset(const std::string& name) {
  TrainConfig c;  // the defaults are the tiny preset
  if (name == "tiny") return c;
  if (name == "small") {
    c.preset = "small";
    c.n_layer = 6;
    c.n_head = 6;
    c.n_embd = 384;
    c.block_size = 256;
    c.batch_size = 64;
    c.dropout = 0.2;
    c.lr = 1e-3;
    c.min_lr = 1e-4;
    c.warmup = 100;
    c.steps = 5000;
    c.beta1 = 0.9;
    c.beta2 = 0.99;
    c.weight_decay = 0.1;
    c.grad_clip = 1.0;
    c.eval_interval = 250;
    c.eval_batches = 20;
    c.log_interval = 10;
    c.sample_tokens = 500;
    return c;
  }
  throw Error(str("unknown preset '", name, "' (available: tiny, small)"));
}

std::vector<std::string> model_config_keys() {
  return {"n_layer", "n_head", "n_kv_head", "n_embd", "block_size", "bias", "tokenizer"};
}

std::vector<std::string> preset_keys() {
  return {"preset",       "n_layer",       "n_head",       "n_kv_head",    "n_embd",
          "block_size",   "dropout",       "bias",         "batch_size",   "grad_accum",
          "steps",        "warmup",        "lr",           "min_lr",       "weight_decay",
          "beta1",        "beta2",         "eps",          "grad_clip",    "eval_interval",
          "eval_batches", "log_interval",  "sample_tokens"};
}

json to_json(const TrainConfig& c) {
  return json{{"preset", c.preset},
              {"n_layer", c.n_layer},
              {"n_head", c.n_head},
              {"n_kv_head", c.n_kv_head},
              {"n_embd", c.n_embd},
              {"block_size", c.block_size},
              {"dropout", c.dropout},
              {"bias", c.bias},
              {"attn", c.attn},
              {"data", c.data},
              {"tokenizer", c.tokenizer},
              {"val_fraction", c.val_fraction},
              {"batch_size", c.batch_size},
              {"grad_accum", c.grad_accum},
              {"steps", c.steps},
              {"lr_decay_steps", c.lr_decay_steps},
              {"warmup", c.warmup},
              {"lr", c.lr},
              {"min_lr", c.min_lr},
              {"weight_decay", c.weight_decay},
              {"beta1", c.beta1},
              {"beta2", c.beta2},
              {"eps", c.eps},
              {"grad_clip", c.grad_clip},
              {"eval_interval", c.eval_interval},
              {"eval_batches", c.eval_batches},
              {"log_interval", c.log_interval},
              {"sample_tokens", c.sample_tokens},
              {"device", c.device},
              {"dtype", c.dtype},
              {"seed", c.seed}};
}

void update_from_json(TrainConfig& c, const json& j) {
  try {
    FG_CHECK(j.is_object(), "the config is not a JSON object");
    auto get = [&](const char* key, auto& field) {
      using T = std::decay_t<decltype(field)>;
      if (!j.contains(key)) return;
      if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
        field = json_number<T>(j.at(key), str("config: '", key, "'"));
      else
        field = j.at(key).get<T>();
    };
    get("preset", c.preset);
    get("n_layer", c.n_layer);
    get("n_head", c.n_head);
    get("n_kv_head", c.n_kv_head);
    get("n_embd", c.n_embd);
    get("block_size", c.block_size);
    get("dropout", c.dropout);
    get("bias", c.bias);
    get("attn", c.attn);
    get("data", c.data);
    get("tokenizer", c.tokenizer);
    get("val_fraction", c.val_fraction);
    get("batch_size", c.batch_size);
    get("grad_accum", c.grad_accum);
    get("steps", c.steps);
    get("lr_decay_steps", c.lr_decay_steps);
    get("warmup", c.warmup);
    get("lr", c.lr);
    get("min_lr", c.min_lr);
    get("weight_decay", c.weight_decay);
    get("beta1", c.beta1);
    get("beta2", c.beta2);
    get("eps", c.eps);
    get("grad_clip", c.grad_clip);
    get("eval_interval", c.eval_interval);
    get("eval_batches", c.eval_batches);
    get("log_interval", c.log_interval);
    get("sample_tokens", c.sample_tokens);
    get("device", c.device);
    get("dtype", c.dtype);
    get("seed", c.seed);
  } catch (const json::exception& e) {
    throw Error(str("config: bad value (", e.what(), ")"));
  }
}

}  // namespace fg::train
