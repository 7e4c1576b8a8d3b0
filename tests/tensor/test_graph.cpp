// CUDA graphs (tensor/graph.h): a captured chain of ops replays with new input values and
// gives what running it op by op gives; its temporaries stay in the graph's own memory pool;
// a capture that waits for the GPU fails with a clear error and leaves everything usable; and
// without a GPU the capture says why it cannot run.
#include "support/test_util.h"

#include "tensor/graph.h"
#include "tensor/ops.h"

using namespace fg;

TEST_CASE("a CUDA graph without a GPU says what it needs", "[graph]") {
  if (cuda_available()) return;  // (the [cuda] cases below cover a machine with a GPU)
  CudaGraph g;
  CHECK_THROWS_WITH(g.capture([] {}), Catch::Contains("CUDA"));
  CHECK_FALSE(g.captured());
  CHECK_THROWS_WITH(g.replay(), Catch::Contains("CudaGraph::replay"));
  CHECK_FALSE(cuda_graph_capturing());
}

#ifdef FLASHGRAD_WITH_CUDA
namespace {
// A chain of the ops a model step uses: elementwise, a reduction, a matrix product, an
// embedding lookup (whose index check reads a device flag, skipped while capturing).
Tensor chain(const Tensor& x, const Tensor& w, const Tensor& table, const Tensor& ids) {
  Tensor h = ops::add_scalar(ops::mul_scalar(x, 2.0), 1.0);
  Tensor y = ops::matmul(h, w);
  Tensor e = ops::embedding(table, ids);  // [n, cols]
  return ops::add(y, e);
}
}  // namespace

TEST_CASE("a captured graph replays with new inputs and matches the ops run one by one",
          "[graph][cuda]") {
  const Device d = Device::cuda();
  const TensorOptions f32 = TensorOptions(DType::f32).device(d);
  Generator g(3);
  Tensor x = randn({4, 8}, f32, &g), w = randn({8, 5}, f32, &g), table = randn({10, 5}, f32, &g);
  Tensor ids = from_vector<int32_t>({1, 7, 0, 9}, {4}, TensorOptions(DType::i32).device(d));
  Tensor out;
  CudaGraph graph;
  graph.capture([&] {
    CHECK(cuda_graph_capturing());
    out = chain(x, w, table, ids);
  });
  REQUIRE(graph.captured());
  CHECK_FALSE(cuda_graph_capturing());
  for (int round = 0; round < 3; ++round) {
    // New values in the same tensors (same addresses), then one replay.
    x.copy_(randn({4, 8}, TensorOptions(DType::f32), &g));
    ids.copy_(from_vector<int32_t>({round, 2, 9 - round, 4}, {4}, TensorOptions(DType::i32)));
    graph.replay();
    const Tensor expect = chain(x, w, table, ids);
    INFO("round " << round);
    CHECK(out.to_vector<float>() == expect.to_vector<float>());  // the same kernels: bit for bit
  }
}

TEST_CASE("a graph's temporaries stay in its own pool while it lives", "[graph][cuda][allocator]") {
  const Device d = Device::cuda();
  const TensorOptions f32 = TensorOptions(DType::f32).device(d);
  Tensor x = ones({1 << 16}, f32), out;
  void* temp_ptr = nullptr;
  {
    CudaGraph graph;
    graph.capture([&] {
      Tensor t = ops::mul_scalar(x, 3.0);  // a temporary, freed inside the capture
      temp_ptr = t.data_ptr();
      out = ops::add_scalar(t, 1.0);
    });
    // Outside work never gets the temporary's block: a replay writes it.
    std::vector<Tensor> held;
    for (int i = 0; i < 8; ++i) {
      held.push_back(empty({1 << 16}, f32));
      CHECK(held.back().data_ptr() != temp_ptr);
    }
    graph.replay();
    const std::vector<float> v = out.to_vector<float>();
    CHECK(v.front() == 4.0f);
    CHECK(v.back() == 4.0f);
  }
  // With the graph gone, its pool's blocks serve everyone again.
  bool reused = false;
  std::vector<Tensor> held;
  for (int i = 0; i < 64 && !reused; ++i) {
    held.push_back(empty({1 << 16}, f32));
    reused = held.back().data_ptr() == temp_ptr;
  }
  CHECK(reused);
}

TEST_CASE("a capture that waits for the GPU fails clearly and leaves the device usable",
          "[graph][cuda]") {
  const Device d = Device::cuda();
  Tensor x = ones({16}, TensorOptions(DType::f32).device(d));
  CudaGraph graph;
  CHECK_THROWS_WITH(graph.capture([&] { (void)ops::mul_scalar(x, 2.0).to_vector<float>(); }),
                    Catch::Contains("CUDA graph") && Catch::Contains("cannot be captured"));
  CHECK_FALSE(graph.captured());
  CHECK_FALSE(cuda_graph_capturing());
  CHECK_THROWS_WITH(graph.replay(), Catch::Contains("nothing was captured"));
  // Ordinary work goes on.
  CHECK(ops::mul_scalar(x, 2.0).to_vector<float>() == std::vector<float>(16, 2.0f));
}
#endif
