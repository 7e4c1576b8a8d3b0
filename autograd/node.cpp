// Grad mode, recording ops into the graph, and the two kinds of node: FunctionNode (an op's
// backward) and AccumulateGrad (a leaf's gradient sink).
#include "autograd/node.h"

#include <set>

#include "tensor/ops.h"

namespace fg {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

Tensor detached_alias(const Tensor& t) {
  if (!t.defined()) return t;
  return t.as_strided_raw(t.shape(), t.strides(), t.storage_offset());
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return Edge{};
  if (t.grad_fn()) return Edge{t.grad_fn(), t.unsafe_impl()->autograd->output_nr};
  // A leaf: its AccumulateGrad node is made once and shared by every op that uses it.
  AutogradMeta& meta = *t.unsafe_impl()->autograd;
  std::shared_ptr<Node> acc = meta.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    meta.grad_accumulator = acc;
  }
  return Edge{acc, 0};
}

std::vector<Tensor> record(const char* name, const std::vector<Tensor>& inputs,
                           std::vector<Tensor> outputs, std::vector<Tensor> saved,
                           BackwardFn fn) {
  if (!any_requires_grad(inputs)) return outputs;
  auto node = std::make_shared<FunctionNode>();
  node->name_ = name;
  node->fn_ = std::move(fn);
  for (const Tensor& in : inputs) {
    node->next_edges.push_back(gradient_edge(in));
    node->needs_.push_back(node->next_edges.back().fn != nullptr);
  }
  for (Tensor& s : saved) node->saved_.push_back(detached_alias(s));
  node->num_outputs = uint32_t(outputs.size());
  for (uint32_t i = 0; i < outputs.size(); ++i) {
    Tensor& out = outputs[i];
    node->output_shapes_.push_back(out.shape());
    node->output_dtypes_.push_back(out.dtype());
    node->output_device_ = out.device();
    if (!is_floating(out.dtype())) continue;  // integer outputs carry no gradient
    // Outputs may alias inputs (views): give each its own TensorImpl so that setting grad_fn
    // never touches the input's metadata.
    out = detached_alias(out);
    AutogradMeta& m = out.autograd_meta();
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = i;
  }
  return outputs;
}

Tensor record(const char* name, const std::vector<Tensor>& inputs, Tensor output,
              std::vector<Tensor> saved, BackwardFn fn) {
  return record(name, inputs, std::vector<Tensor>{std::move(output)}, std::move(saved),
                std::move(fn))[0];
}

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& grads) {
  if (released_)
    throw Error(str("backward through ", name_,
                    " a second time: its saved tensors were freed after the first backward. "
                    "Pass retain_graph=true to the first backward() if you need to go twice."));
  std::vector<Tensor> g(grads.size());
  for (size_t i = 0; i < grads.size(); ++i)
    g[i] = grads[i].defined()
               ? grads[i]
               : zeros(output_shapes_[i], TensorOptions(output_dtypes_[i]).device(output_device_));
  std::vector<Tensor> out = fn_(g, saved_, needs_);
  FG_CHECK(out.size() == next_edges.size(), name_, ": backward returned ", out.size(),
           " gradients for ", next_edges.size(), " inputs");
  return out;
}

void FunctionNode::release_saved() {
  saved_.clear();
  released_ = true;
}

std::vector<std::shared_ptr<Storage>> FunctionNode::saved_storages() const {
  std::vector<std::shared_ptr<Storage>> r;
  for (const Tensor& t : saved_)
    if (t.defined()) r.push_back(t.storage());
  return r;
}

namespace {
thread_local GradReadyHook g_grad_ready_hook;
}  // namespace

GradReadyHookGuard::GradReadyHookGuard(GradReadyHook hook) : prev_(std::move(g_grad_ready_hook)) {
  g_grad_ready_hook = std::move(hook);
}
GradReadyHookGuard::~GradReadyHookGuard() { g_grad_ready_hook = std::move(prev_); }

std::vector<Tensor> AccumulateGrad::apply(const std::vector<Tensor>& grads) {
  std::shared_ptr<TensorImpl> impl = leaf_.lock();
  if (!impl || !grads[0].defined()) return {};
  Tensor leaf(impl);
  Tensor g = grads[0];
  FG_CHECK(g.shape() == leaf.shape(), "AccumulateGrad: gradient of shape ", shape_str(g.shape()),
           " for a leaf of shape ", shape_str(leaf.shape()));
  Tensor prev = leaf.grad();
  // Out of place, so that a gradient tensor handed to the user is never changed later. With a
  // gradient-ready hook, .grad is a copy even when it could alias g: the hook's owner may
  // change it in place (data parallel averages it) while the pass still reads g elsewhere.
  Tensor sum = prev.defined()         ? ops::add(prev, g)
               : g_grad_ready_hook    ? ops::clone(detached_alias(g))
                                      : ops::contiguous(detached_alias(g));
  if (sum.dtype() != leaf.dtype()) sum = ops::to_dtype(sum, leaf.dtype());
  leaf.set_grad(sum);
  if (g_grad_ready_hook) g_grad_ready_hook(leaf);
  return {};
}

}  // namespace fg
