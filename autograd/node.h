// Autograd graph nodes, grad mode, and the helper that records an op in the graph.
//
// During the forward pass every differentiable op whose inputs require grad creates a Node
// holding what its backward needs (saved tensors, shapes, scalars) and edges to the nodes of
// its inputs. backward() (autograd/engine.cpp) walks the graph in reverse topological order.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace fg {

struct Edge {
  std::shared_ptr<Node> fn;  // null: this input needs no gradient
  uint32_t input_nr = 0;     // which output of fn the gradient belongs to
};

struct Node : std::enable_shared_from_this<Node> {
  virtual ~Node() = default;
  virtual std::string name() const = 0;
  // Given the gradient of each output (undefined when none reached it), returns the gradient
  // of each input, one per next_edges entry (undefined for inputs that need none).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  // Drops saved tensors once backward has used them (unless retain_graph).
  virtual void release_saved() {}
  // Bytes of distinct storages this node keeps for backward (for memory experiments).
  virtual std::vector<std::shared_ptr<Storage>> saved_storages() const { return {}; }

  std::vector<Edge> next_edges;
  uint32_t num_outputs = 1;
};

// The node of a leaf that requires grad: adds incoming gradients into the leaf's .grad.
struct AccumulateGrad : Node {
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(leaf) {}
  std::string name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  std::weak_ptr<TensorImpl> leaf_;
};

// ---- gradient-ready hook ----
// Called with each leaf once a backward pass has finished its gradient (once per leaf and pass,
// right after its .grad holds the sum), while the pass goes on with the rest of the graph:
// data-parallel training starts averaging gradients across GPUs there, overlapping the rest of
// the backward. Per thread; set for a scope by GradReadyHookGuard (nested guards restore the
// outer hook).
using GradReadyHook = std::function<void(const Tensor& leaf)>;
class GradReadyHookGuard {
 public:
  explicit GradReadyHookGuard(GradReadyHook hook);
  ~GradReadyHookGuard();
  GradReadyHookGuard(const GradReadyHookGuard&) = delete;
  GradReadyHookGuard& operator=(const GradReadyHookGuard&) = delete;

 private:
  GradReadyHook prev_;
};

// ---- grad mode ----
bool grad_enabled();
void set_grad_enabled(bool on);
// Disables graph recording in a scope (as torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// ---- recording ops ----
// The backward of a FunctionNode: gets the output gradients (undefined ones replaced by zeros
// of the output's shape) and the saved tensors, returns one gradient per input (undefined
// where the input needs none; `needs[i]` says which do).
using BackwardFn = std::function<std::vector<Tensor>(
    const std::vector<Tensor>& grads, const std::vector<Tensor>& saved,
    const std::vector<bool>& needs)>;

struct FunctionNode : Node {
  std::string name_;
  std::vector<Tensor> saved_;  // detached aliases: no reference cycles through grad_fn
  std::vector<Shape> output_shapes_;
  std::vector<DType> output_dtypes_;
  Device output_device_;
  std::vector<bool> needs_;
  BackwardFn fn_;
  bool released_ = false;

  std::string name() const override { return name_; }
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override;
  void release_saved() override;
  std::vector<std::shared_ptr<Storage>> saved_storages() const override;
};

// True when grad mode is on and any input requires grad.
bool any_requires_grad(const std::vector<Tensor>& inputs);
// The edge a gradient for `t` should flow along (null fn when t needs none).
Edge gradient_edge(const Tensor& t);

// Records an op: if any input requires grad (and grad mode is on), makes a FunctionNode with
// edges to the inputs, saves `saved` (detached), and marks the outputs as its results.
// Returns the outputs (the same tensors, now with grad_fn set). Undefined inputs are allowed
// (e.g. an absent bias) and get no edge.
std::vector<Tensor> record(const char* name, const std::vector<Tensor>& inputs,
                           std::vector<Tensor> outputs, std::vector<Tensor> saved,
                           BackwardFn fn);
Tensor record(const char* name, const std::vector<Tensor>& inputs, Tensor output,
              std::vector<Tensor> saved, BackwardFn fn);

// A detached alias of t: same storage and view, no autograd metadata.
Tensor detached_alias(const Tensor& t);

// Runs backward from `roots` with the given gradients (engine.cpp).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

// Total bytes of distinct storages saved for backward by the graph behind `t` (each storage
// counted once, whether saved by one node or many).
size_t saved_bytes_for_backward(const Tensor& t);

}  // namespace fg
