// Module: parameter and submodule registry, train/eval, device and dtype moves, state dicts.
#include "nn/module.h"

#include <algorithm>

#include "autograd/functions.h"

namespace fg::nn {

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  FG_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "register_parameter: bad name '", name, "' (non-empty, no dots)");
  FG_CHECK(t.defined(), "register_parameter: '", name, "' is an undefined tensor");
  for (auto& p : params_)
    FG_CHECK(p.first != name, "register_parameter: '", name, "' is already registered");
  // A parameter is a leaf: cut any graph the initialiser built.
  if (!t.is_leaf()) t = t.detach();
  if (requires_grad) t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::add_module(const std::string& name, std::shared_ptr<Module> m) {
  FG_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "register_module: bad name '", name, "' (non-empty, no dots)");
  FG_CHECK(m != nullptr, "register_module: '", name, "' is null");
  for (auto& c : children_)
    FG_CHECK(c.first != name, "register_module: '", name, "' is already registered");
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, bool recurse, NamedTensors& out,
                     std::vector<const TensorImpl*>& seen) const {
  for (auto& p : params_) {
    const TensorImpl* id = p.second.unsafe_impl();
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;  // tied weight
    seen.push_back(id);
    out.emplace_back(prefix + p.first, p.second);
  }
  if (!recurse) return;
  for (auto& c : children_) c.second->collect(prefix + c.first + ".", true, out, seen);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", recurse, out, seen);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters(recurse)) out.push_back(p.second);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.second.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void set_data(const Tensor& t, const Tensor& src) {
  TensorImpl* dst = t.unsafe_impl();
  const TensorImpl* s = src.unsafe_impl();
  FG_CHECK(dst && s, "set_data: undefined tensor");
  dst->storage = s->storage;
  dst->offset = s->offset;
  dst->sizes = s->sizes;
  dst->strides = s->strides;
  dst->dtype = s->dtype;
  dst->version++;
  if (dst->autograd) dst->autograd->grad.reset();
}

void Module::to(Device d) {
  NoGradGuard ng;
  for (auto& p : named_parameters())
    if (p.second.device() != d) set_data(p.second, ops::to_device(p.second, d));
}

void Module::to(DType t) {
  NoGradGuard ng;
  for (auto& p : named_parameters()) {
    FG_CHECK(is_floating(t), "Module::to: parameters must stay floating, got ", dtype_name(t));
    if (p.second.dtype() != t) set_data(p.second, ops::to_dtype(p.second, t));
  }
}

void Module::zero_grad() {
  for (auto& p : named_parameters()) p.second.zero_grad();
}

void Module::load_state_dict(const std::map<std::string, Tensor>& values, bool strict) {
  NamedTensors params = named_parameters();
  std::string problems;
  for (auto& p : params) {
    auto it = values.find(p.first);
    if (it == values.end()) {
      problems += "\n  missing: " + p.first + " " + shape_str(p.second.shape());
    } else if (it->second.shape() != p.second.shape()) {
      problems += "\n  shape mismatch: " + p.first + " is " + shape_str(p.second.shape()) +
                  " in the model but " + shape_str(it->second.shape()) + " in the state dict";
    }
  }
  if (strict) {
    for (auto& v : values) {
      bool known = std::any_of(params.begin(), params.end(),
                               [&](const auto& p) { return p.first == v.first; });
      if (!known) problems += "\n  unexpected: " + v.first + " " + shape_str(v.second.shape());
    }
  }
  FG_CHECK(problems.empty(), "load_state_dict: the state dict does not fit this ", name(),
           problems);
  NoGradGuard ng;
  for (auto& p : params) {
    Tensor dst = p.second;
    dst.copy_(values.at(p.first));
  }
}

}  // namespace fg::nn
