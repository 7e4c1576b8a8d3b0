// CUDA graphs: the GPU work of a function recorded once and replayed many times, for the launch
// cost of one call instead of one per kernel (a GPT decode step is some 150 small kernels).
//
//   CudaGraph graph;
//   graph.capture([&] { out = step(in); });  // records the work; nothing runs on the GPU
//   graph.replay();                          // runs it: `out` now holds step(in)
//   in.copy_(next_input); graph.replay();    // new values, same addresses
//
// The rules (those of PyTorch's torch.cuda.CUDAGraph):
//  - A replay reads and writes the addresses the capture saw. Inputs are tensors the caller
//    keeps and refills in place (copy_); outputs are the tensors made during the capture,
//    overwritten by every replay.
//  - The captured function must not wait for the GPU: no copy to the host, no to_vector. The
//    checks that read a device value back (out-of-range embedding ids, gather indices) are
//    skipped while capturing; their kernels still write nothing out of bounds.
//  - Shapes, and every choice made on the host (which kernel, how many splits), are frozen.
//  - Temporaries come from a memory pool of the graph's own, released with the graph.
//  - Every tensor the captured work reads or writes that was made before the capture must stay
//    alive as long as the graph: one freed during the capture returns to the common cache,
//    where other work could be given the memory a replay still uses.
// CUDA only, on the calling thread's default stream (on which all flashgrad work runs).
#pragma once
#include <functional>

namespace fg {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Records fn's GPU work (replacing an earlier capture). Throws, naming the failing call,
  // when fn does something a capture cannot hold; the graph is then left empty.
  void capture(const std::function<void()>& fn);
  // Runs the recorded work, queued like any kernel (returns before it finishes).
  void replay() const;
  bool captured() const { return exec_ != nullptr; }
  // Drops the recorded work and its memory pool.
  void reset();

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
  int pool_ = 0;          // the allocator's pool of this graph (0: none yet)
};

// Whether the calling thread is capturing a CUDA graph now (false without CUDA).
bool cuda_graph_capturing();

}  // namespace fg
