// AdamW (one fused op per parameter), the warm-up + cosine LR schedule, gradient clipping.
#include "train/optim.h"

#include <cmath>
#include <map>
#include <tuple>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace fg::train {

AdamW::AdamW(const NamedTensors& params, const AdamWOptions& o, const std::vector<bool>& owned)
    : options_(o) {
  FG_CHECK(owned.empty() || owned.size() == params.size(), "AdamW: ", owned.size(),
           " ownership flags for ", params.size(), " parameters");
  FG_CHECK(o.lr_ >= 0 && o.eps_ > 0 && o.beta1_ >= 0 && o.beta1_ < 1 && o.beta2_ >= 0 &&
               o.beta2_ < 1 && o.weight_decay_ >= 0,
           "AdamW: bad options lr=", o.lr_, " betas=(", o.beta1_, ", ", o.beta2_, ") eps=", o.eps_,
           " weight_decay=", o.weight_decay_);
  for (auto& [name, p] : params) {
    FG_CHECK(p.defined() && p.is_contiguous(), "AdamW: parameter '", name,
             "' must be a defined contiguous tensor");
    FG_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::bf16 || p.dtype() == DType::f16,
             "AdamW: parameter '", name, "' has dtype ", dtype_name(p.dtype()),
             "; use f32, bf16 or f16");
    ParamState s;
    s.name = name;
    s.param = p;
    s.decay = p.dim() >= 2;
    s.owned = owned.empty() || owned[states_.size()];
    if (s.owned) allocate_state(s);
    states_.push_back(std::move(s));
  }
}

void AdamW::step(double grad_scale) {
  ++step_;
  // Parameters grouped by (dtype, device, decay): one multi-tensor update per group.
  std::map<std::tuple<DType, std::string, bool>, std::vector<ops::AdamWSlot>> groups;
  for (auto& s : states_) {
    Tensor g = s.param.grad();
    if (!g.defined() || !s.owned) continue;
    FG_CHECK(g.dtype() == s.param.dtype() && g.shape() == s.param.shape() &&
                 g.device() == s.param.device(),
             "AdamW: gradient of '", s.name, "' (", dtype_name(g.dtype()), " ",
             shape_str(g.shape()), " on ", g.device().str(), ") does not match the parameter (",
             dtype_name(s.param.dtype()), " ", shape_str(s.param.shape()), " on ",
             s.param.device().str(), ")");
    FG_CHECK(s.exp_avg.device() == s.param.device(), "AdamW: parameter '", s.name,
             "' moved to ", s.param.device().str(), " after the optimizer was made; make it after "
             "moving the model");
    groups[{s.param.dtype(), s.param.device().str(), s.decay}].push_back(
        {s.param, s.master, g, s.exp_avg, s.exp_avg_sq});
  }
  for (auto& [key, slots] : groups) {
    const bool decay = std::get<2>(key);
    ops::adamw_multi_(slots, AdamWArgs::make(options_.lr_, options_.beta1_, options_.beta2_,
                                             options_.eps_, decay ? options_.weight_decay_ : 0.0,
                                             step_, grad_scale));
  }
}

void AdamW::zero_grad() {
  for (auto& s : states_) s.param.zero_grad();
}

NamedTensors AdamW::fp32_weights() const {
  NamedTensors out;
  for (auto& s : states_) {
    FG_CHECK(s.owned, "AdamW::fp32_weights: parameter '", s.name, "' is sharded to another rank; "
             "gather the state first (set_owned all true, then fill it from the owners)");
    out.emplace_back(s.name, s.master.defined() ? s.master : s.param.detach());
  }
  return out;
}

NamedTensors AdamW::state_tensors() const {
  NamedTensors out;
  for (auto& s : states_) {
    FG_CHECK(s.owned, "AdamW::state_tensors: parameter '", s.name, "' is sharded to another "
             "rank; gather the state first");
    out.emplace_back("exp_avg." + s.name, s.exp_avg);
    out.emplace_back("exp_avg_sq." + s.name, s.exp_avg_sq);
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, Tensor>& moments, int64_t step,
                       const std::map<std::string, Tensor>* fp32_weights) {
  FG_CHECK(step >= 0, "AdamW::load_state: negative step ", step);
  auto fetch = [&](const std::map<std::string, Tensor>& m, const std::string& key,
                   const Shape& shape, const char* what) {
    auto it = m.find(key);
    FG_CHECK(it != m.end(), "AdamW::load_state: ", what, " has no entry '", key, "'");
    FG_CHECK(it->second.shape() == shape, "AdamW::load_state: '", key, "' in ", what, " is ",
             shape_str(it->second.shape()), " but the parameter is ", shape_str(shape));
    return it->second;
  };
  FG_CHECK(moments.size() == 2 * states_.size(), "AdamW::load_state: the optimizer state has ",
           moments.size(), " tensors but this model needs ", 2 * states_.size());
  // Check everything before changing anything.
  for (auto& s : states_) {
    fetch(moments, "exp_avg." + s.name, s.param.shape(), "the optimizer state");
    fetch(moments, "exp_avg_sq." + s.name, s.param.shape(), "the optimizer state");
    if (fp32_weights) fetch(*fp32_weights, s.name, s.param.shape(), "the weights");
  }
  for (auto& s : states_) {
    if (s.owned) {  // (a sharded optimizer keeps the moments of its own parameters only)
      s.exp_avg.copy_(fetch(moments, "exp_avg." + s.name, s.param.shape(), ""));
      s.exp_avg_sq.copy_(fetch(moments, "exp_avg_sq." + s.name, s.param.shape(), ""));
    }
    if (fp32_weights) {
      Tensor w = fetch(*fp32_weights, s.name, s.param.shape(), "");
      if (s.master.defined()) s.master.copy_(w);
      s.param.copy_(w);
    }
  }
  step_ = step;
}

void AdamW::load_fp32_weights(const std::map<std::string, Tensor>& w) {
  for (auto& s : states_) {
    auto it = w.find(s.name);
    FG_CHECK(it != w.end() && it->second.shape() == s.param.shape(),
             "AdamW::load_fp32_weights: no weight of shape ", shape_str(s.param.shape()), " for '",
             s.name, "'");
  }
  for (auto& s : states_) {
    const Tensor& v = w.at(s.name);
    if (s.master.defined()) s.master.copy_(v);
    s.param.copy_(v);
  }
}

void AdamW::set_owned(const std::vector<bool>& owned) {
  FG_CHECK(owned.size() == states_.size(), "AdamW::set_owned: ", owned.size(),
           " flags for ", states_.size(), " parameters");
  for (size_t i = 0; i < states_.size(); ++i) {
    ParamState& s = states_[i];
    if (owned[i] && !s.owned) {
      allocate_state(s);
    } else if (!owned[i]) {
      s.exp_avg = s.exp_avg_sq = s.master = Tensor();
    }
    s.owned = owned[i];
  }
}

void AdamW::allocate_state(ParamState& s) {
  const TensorOptions f32 = TensorOptions(DType::f32).device(s.param.device());
  s.exp_avg = zeros(s.param.shape(), f32);
  s.exp_avg_sq = zeros(s.param.shape(), f32);
  if (s.param.dtype() != DType::f32) s.master = ops::to_dtype(s.param.detach(), DType::f32);
}

std::vector<Tensor> AdamW::state_of(size_t i) const {
  const ParamState& s = states_.at(i);
  FG_CHECK(s.owned, "AdamW::state_of: parameter '", s.name, "' is not owned here");
  return {s.exp_avg, s.exp_avg_sq, s.master.defined() ? s.master : s.param.detach()};
}

size_t AdamW::state_bytes() const {
  size_t n = 0;
  for (const ParamState& s : states_)
    for (const Tensor* t : {&s.exp_avg, &s.exp_avg_sq, &s.master})
      if (t->defined()) n += t->nbytes();
  return n;
}

size_t AdamW::whole_state_bytes() const {
  size_t n = 0;  // allocate_state's tensors, fp32: two moments, and a master for 16-bit ones
  for (const ParamState& s : states_)
    n += size_t(s.param.numel()) * 4 * (s.param.dtype() == DType::f32 ? 2 : 3);
  return n;
}

double LRSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return max_lr * double(step + 1) / double(warmup);
  if (step >= total) return min_lr;
  double span = double(std::max<int64_t>(1, total - warmup));
  double progress = double(step - warmup) / span;
  return min_lr + 0.5 * (1.0 + std::cos(M_PI * progress)) * (max_lr - min_lr);
}

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard ng;
  // One multi-tensor sum of squares per (dtype, device) group, added on the host: one device
  // sync per group (one in a model of one dtype).
  std::map<std::pair<DType, std::string>, std::vector<Tensor>> groups;
  for (auto& p : params) {
    Tensor g = p.grad();
    if (g.defined()) groups[{g.dtype(), g.device().str()}].push_back(g);
  }
  double total = 0;
  for (auto& [key, grads] : groups) total += ops::sum_squares(grads).item();
  return std::sqrt(total);
}

double clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0 || !std::isfinite(norm)) return 1.0;
  return std::min(1.0, max_norm / (norm + 1e-6));
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  double norm = grad_norm(params);
  double c = clip_coefficient(norm, max_norm);
  if (c < 1.0) {
    NoGradGuard ng;
    for (auto& p : params) {
      Tensor g = p.grad();
      if (g.defined()) g.copy_(ops::mul_scalar(g, c));
    }
  }
  return norm;
}

}  // namespace fg::train
