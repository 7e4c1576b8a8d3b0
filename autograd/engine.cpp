// The backward engine: walks the graph from the roots in reverse topological order, summing
// the gradients that reach each node's outputs before running it, as PyTorch's engine does.
#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace fg {

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
  FG_CHECK(roots.size() == grads.size(), "backward: ", roots.size(), " roots but ", grads.size(),
           " gradients");
  NoGradGuard no_grad;

  // Count, for every node, how many edges point at it (its dependencies).
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  std::vector<Edge> root_edges;
  for (const Tensor& r : roots) {
    FG_CHECK(r.requires_grad(), "backward: tensor ", shape_str(r.shape()),
             " does not require grad and has no grad_fn; call set_requires_grad() on an input");
    Edge e = gradient_edge(r);
    root_edges.push_back(e);
    if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.fn) continue;
      deps[e.fn.get()]++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }

  // Gradient buffers, one slot per node output, filled as producers run.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep_alive;
  auto accumulate = [&](const Edge& e, const Tensor& g) {
    auto& buf = buffers[e.fn.get()];
    if (buf.empty()) buf.resize(e.fn->num_outputs);
    keep_alive[e.fn.get()] = e.fn;
    Tensor& slot = buf[e.input_nr];
    slot = slot.defined() ? ops::add(slot, g) : g;
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    Tensor g = grads[i];
    if (!g.defined()) {
      FG_CHECK(roots[i].numel() == 1, "backward: a gradient can be created implicitly only for "
               "a scalar output; got shape ", shape_str(roots[i].shape()),
               ", so pass grad_output of that shape");
      g = ones(roots[i].shape(), TensorOptions(roots[i].dtype()).device(roots[i].device()));
    }
    FG_CHECK(g.shape() == roots[i].shape(), "backward: grad_output of shape ",
             shape_str(g.shape()), " for an output of shape ", shape_str(roots[i].shape()));
    accumulate(root_edges[i], g);
  }

  std::deque<Node*> ready;
  for (const Edge& e : root_edges)
    if (deps[e.fn.get()] == 0 &&
        std::find(ready.begin(), ready.end(), e.fn.get()) == ready.end())
      ready.push_back(e.fn.get());
  while (!ready.empty()) {
    Node* n = ready.front();
    ready.pop_front();
    std::shared_ptr<Node> hold = keep_alive[n];
    std::vector<Tensor> in = std::move(buffers[n]);
    buffers.erase(n);
    if (in.empty()) in.resize(n->num_outputs);
    std::vector<Tensor> out = n->apply(in);
    if (!retain_graph) n->release_saved();
    for (size_t i = 0; i < n->next_edges.size() && i < out.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.fn) continue;
      if (out[i].defined()) accumulate(e, out[i]);
      else keep_alive[e.fn.get()] = e.fn;
      if (--deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
    }
    keep_alive.erase(n);
  }
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  run_backward({*this}, {grad_output}, retain_graph);
}

size_t saved_bytes_for_backward(const Tensor& t) {
  if (!t.defined() || !t.grad_fn()) return 0;
  std::set<Storage*> storages;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{t.grad_fn().get()};
  seen.insert(stack.back());
  size_t total = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& s : n->saved_storages())
      if (storages.insert(s.get()).second) total += s->nbytes();
    for (const Edge& e : n->next_edges)
      if (e.fn && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  }
  return total;
}

}  // namespace fg
