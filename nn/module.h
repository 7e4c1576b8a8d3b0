// Module: the base of every layer in nn/, in the style of PyTorch's C++ modules.
//
// A module owns named parameters (leaf tensors that require grad) and named submodules, both
// registered in the constructor in a fixed order, so that named_parameters() lists the same
// names in the same order on every run ("blocks.0.attn.c_attn.weight", ...). That order is
// what the optimizer, the checkpoints and the initialisation follow.
//
//   struct MyLayer : Module {
//     Tensor w;
//     std::shared_ptr<Linear> proj;
//     MyLayer() {
//       w = register_parameter("w", zeros({4}));
//       proj = register_module("proj", std::make_shared<Linear>(LinearOptions(4, 4)));
//     }
//   };
//
// Moving a module to another device or dtype (to()) replaces each parameter's data in place, so
// the tensors held in member fields, in the registry and in an optimizer stay the same objects.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace fg::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module : public std::enable_shared_from_this<Module> {
 public:
  virtual ~Module() = default;

  // Registers a parameter under `name` (marks it as requiring grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Registers a submodule under `name` and returns it.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_module(name, m);
    return m;
  }

  // Every parameter of this module and (when recurse) its submodules, depth first in
  // registration order, named by their dotted path. A tensor registered twice (weight tying)
  // is listed once, under the first name it was registered with.
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const {
    return children_;
  }
  int64_t num_parameters() const;

  // Training mode switches dropout on; eval mode off. Applies to all submodules.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves (or casts) every parameter in place; gradients are dropped.
  void to(Device d);
  void to(DType t);
  void zero_grad();

  // The parameters by name (a copy-free view of the registry, as named_parameters()).
  NamedTensors state_dict() const { return named_parameters(); }
  // Copies values into the parameters (converting dtype/device as needed). Throws naming every
  // missing or unexpected name and every shape mismatch; `strict` rejects unexpected names.
  void load_state_dict(const std::map<std::string, Tensor>& values, bool strict = true);

  virtual std::string name() const { return "Module"; }

 protected:
  void add_module(const std::string& name, std::shared_ptr<Module> m);

 private:
  void collect(const std::string& prefix, bool recurse, NamedTensors& out,
               std::vector<const TensorImpl*>& seen) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An ordered list of submodules named "0", "1", ... (GPT's blocks: "blocks.0.attn...").
template <typename M>
class ModuleList : public Module {
 public:
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
    return items_.back();
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<M>& operator[](size_t i) const { return items_.at(i); }
  typename std::vector<std::shared_ptr<M>>::const_iterator begin() const { return items_.begin(); }
  typename std::vector<std::shared_ptr<M>>::const_iterator end() const { return items_.end(); }
  std::string name() const override { return "ModuleList"; }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// Replaces t's data (storage, shape, dtype) by that of `src`, keeping t's identity and its
// requires_grad flag: every holder of t sees the new data (PyTorch's `set_data`).
void set_data(const Tensor& t, const Tensor& src);

}  // namespace fg::nn
