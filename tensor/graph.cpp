// CudaGraph (see tensor/graph.h): capture and replay through the CUDA backend, whose allocator
// keeps each graph's memory in a pool of its own.
#include "tensor/graph.h"

#include "core/error.h"
#ifdef FLASHGRAD_WITH_CUDA
#include "tensor/cuda/cuda_backend.h"
#endif

namespace fg {

#ifdef FLASHGRAD_WITH_CUDA

CudaGraph::~CudaGraph() { reset(); }

void CudaGraph::reset() {
  cuda_backend::graph_destroy(exec_);
  exec_ = nullptr;
  if (pool_ != 0) cuda_backend::graph_pool_release(pool_);
  pool_ = 0;
}

void CudaGraph::capture(const std::function<void()>& fn) {
  reset();
  FG_CHECK(cuda_backend::available(), "CudaGraph: no usable CUDA device; CUDA graphs need one");
  pool_ = cuda_backend::graph_pool_create();
  cuda_backend::graph_capture_begin(pool_);
  try {
    fn();
  } catch (const OutOfMemoryError&) {  // as it is: the caller may free memory and retry
    cuda_backend::graph_capture_end(/*keep=*/false);
    reset();
    throw;
  } catch (const std::exception& e) {
    cuda_backend::graph_capture_end(/*keep=*/false);
    reset();
    throw Error(str("CUDA graph: the work being captured failed (", e.what(), "). Work that "
                    "synchronises with the host (a copy to the host, a check that reads a device "
                    "value) cannot be captured; run it outside the graph"));
  } catch (...) {
    cuda_backend::graph_capture_end(/*keep=*/false);
    reset();
    throw;
  }
  try {
    exec_ = cuda_backend::graph_capture_end(/*keep=*/true);
  } catch (...) {
    reset();
    throw;
  }
}

void CudaGraph::replay() const {
  FG_CHECK(exec_ != nullptr, "CudaGraph::replay: nothing was captured; call capture() first");
  cuda_backend::graph_launch(exec_);
}

bool cuda_graph_capturing() { return cuda_backend::capturing(); }

#else  // a build without CUDA

CudaGraph::~CudaGraph() = default;
void CudaGraph::reset() {}
void CudaGraph::capture(const std::function<void()>&) {
  throw Error("CudaGraph: this flashgrad was built without CUDA; CUDA graphs need a CUDA build "
              "and a GPU");
}
void CudaGraph::replay() const {
  throw Error("CudaGraph::replay: this flashgrad was built without CUDA");
}
bool cuda_graph_capturing() { return false; }

#endif

}  // namespace fg
