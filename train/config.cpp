// TrainConfig: presets, validation and JSON.
#include "train/config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

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

void TrainConfig::validate() const {
  model_config(1).validate();
  FG_CHECK(tokenizer == "char" || tokenizer == "byte", "--tokenizer must be char or byte, got '",
           tokenizer, "'");
  FG_CHECK(dtype == "fp32" || dtype == "bf16", "--dtype must be fp32 or bf16, got '", dtype, "'");
  FG_CHECK(batch_size > 0, "--batch-size must be positive, got ", batch_size);
  FG_CHECK(grad_accum > 0, "--grad-accum must be positive, got ", grad_accum);
  FG_CHECK(steps > 0, "--steps must be positive, got ", steps);
  FG_CHECK(warmup >= 0, "--warmup must be >= 0, got ", warmup);
  FG_CHECK(lr > 0 && min_lr >= 0 && min_lr <= lr, "need 0 <= --min-lr <= --lr and --lr > 0, got lr=",
           lr, " min_lr=", min_lr);
  FG_CHECK(weight_decay >= 0, "--weight-decay must be >= 0, got ", weight_decay);
  FG_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "--beta1 and --beta2 must be in [0, 1)");
  FG_CHECK(eps > 0, "--eps must be positive, got ", eps);
  FG_CHECK(grad_clip >= 0, "--grad-clip must be >= 0 (0 disables), got ", grad_clip);
  FG_CHECK(eval_interval > 0, "--eval-interval must be positive, got ", eval_interval);
  FG_CHECK(eval_batches > 0, "--eval-batches must be positive, got ", eval_batches);
  FG_CHECK(log_interval > 0, "--log-interval must be positive, got ", log_interval);
  FG_CHECK(sample_tokens >= 0, "--sample-tokens must be >= 0, got ", sample_tokens);
  FG_CHECK(val_fraction > 0 && val_fraction < 1, "val_fraction must be in (0, 1)");
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
      if (j.contains(key)) field = j.at(key).get<std::decay_t<decltype(field)>>();
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
