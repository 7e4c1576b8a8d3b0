// Memory experiments: how the memory of attention grows with the sequence length N, naive
// (materialises N x N: O(N^2)) against flash (O(N)). `flashgrad memprofile` (cli/memprofile.cpp)
// is a thin front end over this module; tests/train/test_memprofile.cpp tests it directly.
//
// Two scopes are measured at each N, for each implementation:
//   attention   one forward + backward of scaled_dot_product_attention on q, k, v [B, N, H, D]
//               with a given output gradient dO;
//   train-step  one full training step of a small GPT (nn/gpt.h) with context N: forward,
//               cross-entropy loss, backward, AdamW step, zero_grad.
//
// What is counted, from the allocator's exact counters (tensor/allocator.h):
//   base      bytes allocated before the step: q, k, v, dO (attention); the model, AdamW's
//             state and the batch (train-step)
//   peak      max(allocated during the step) - base: everything the step creates, including
//             the gradients it leaves behind (dQ, dK, dV / the parameter gradients), the
//             output O and every temporary. This is PyTorch's "extra peak bytes beyond the
//             inputs" (torch.cuda.max_memory_allocated() - memory_allocated() before).
//   fwd peak  the same maximum taken right after the forward, before backward
//   saved     bytes of the distinct storages the graph holds for backward after the forward
//             (saved_bytes_for_backward; includes inputs that a node saves, such as q, k, v)
//   grads     bytes of the gradients the step produced
//   device    the device's own used memory (total - free) right after the step, before the
//             allocator's cache is emptied: the caching allocator still holds every block it
//             reserved at the peak, so this is the device's use at peak, CUDA context included.
//             On CPU: MemTotal - MemAvailable of the machine.
// Between points every tensor is freed and empty_cache() returns cached blocks to the device.
// A point that runs out of memory is recorded as OOM and the sweep goes on.
//
//   memprofile::Settings s = memprofile::settings_for(Device::cpu());
//   auto points = memprofile::run_sweep(
//       s, [&](auto scope, auto impl, int64_t n) { return memprofile::measure(s, scope, impl, n); },
//       {});
//   std::cout << memprofile::summary(s, points);
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "nn/gpt.h"
#include "train/svg_chart.h"

namespace fg::memprofile {

enum class Scope { attention, train_step };
const char* scope_name(Scope s);  // "attention", "train-step"

struct Settings {
  Device device = Device::cpu();
  std::string device_description;  // e.g. "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)"
  std::vector<int64_t> lengths;
  std::vector<Scope> scopes{Scope::attention};
  std::vector<AttentionImpl> impls{AttentionImpl::naive, AttentionImpl::flash};
  // attention scope
  int64_t batch = 1, heads = 16, head_dim = 64;
  DType dtype = DType::f32;
  bool causal = true;
  double dropout = 0.0;
  bool deterministic = false;  // CUDA flash backward without the fp32 dQ accumulator
  // train-step scope: a GPT with context N (always causal; dropout as above)
  int64_t n_layer = 2, n_embd = 256, n_head = 4, train_batch = 1, vocab = 256;
  // timing: one run measures memory, then `reps` timed runs (median); 0 times the first run
  int reps = 2;
};

// The defaults of `flashgrad memprofile` on `device`: on CUDA the README's experiment
// (N 256 .. 65536, H 16, bf16, GPT width 256, 3 timed runs); on the CPU a sweep of seconds
// (N 64 .. 1024, H 4, f32, width 128, 1 timed run). The device description is filled in.
Settings settings_for(Device device);

// Throws fg::Error naming the first setting that cannot be measured (sizes, dtype, dropout,
// and, when the train-step scope is on, the GPT config at the shortest length).
void check_settings(const Settings& s);

// "cuda:0 (<name>, <memory>)" or "cpu (<RAM> RAM)".
std::string describe_device(Device d);

// The doubling lengths min, 2 min, ... up to max (inclusive when it is on the ladder).
std::vector<int64_t> doubling_lengths(int64_t min_len, int64_t max_len);
// Given lengths, sorted and without repeats; throws for a length that is not positive.
std::vector<int64_t> explicit_lengths(std::vector<int64_t> lengths);

enum class Status { ok, oom, error };
const char* status_name(Status s);  // "ok", "OOM", "error"

struct Point {
  Scope scope = Scope::attention;
  AttentionImpl impl = AttentionImpl::flash;
  int64_t seq_len = 0;
  Status status = Status::ok;
  std::string message;  // why it failed
  size_t base_bytes = 0, peak_bytes = 0, forward_peak_bytes = 0, saved_bytes = 0, grad_bytes = 0;
  size_t peak_reserved_bytes = 0, device_used_bytes = 0, device_total_bytes = 0;
  double ms_per_step = std::numeric_limits<double>::quiet_NaN();
  int timed_reps = 0;
};

// ---- measuring one point ----

// One forward + backward of the attention node at length N.
Point measure_attention(const Settings& s, AttentionImpl impl, int64_t N);
// The GPT a train-step point at length N trains (validated).
nn::GPTConfig train_step_config(const Settings& s, AttentionImpl impl, int64_t N);
// One training step of a GPT with context N: loss, backward, AdamW step, zero_grad. 16-bit
// dtypes train as `flashgrad train --dtype bf16` does: the model in 16 bits, fp32 master
// weights in AdamW.
Point measure_train_step(const Settings& s, AttentionImpl impl, int64_t N);
Point measure(const Settings& s, Scope scope, AttentionImpl impl, int64_t N);

// One memory-less run of every (scope, impl) at a small length, so that loading kernels and
// creating library handles (cuBLAS) land in no measured point. Failures are ignored here: the
// sweep reports them.
void warm_up(const Settings& s);

// ---- the sweep ----

// True for messages of failed allocations that do not come as OutOfMemoryError (a kernel's
// or a library's own allocation).
bool looks_like_oom(const std::string& msg);

// Frees what the allocator caches so that the next point starts from a clean device.
void release_memory(Device d);

using MeasureFn = std::function<Point(Scope, AttentionImpl, int64_t)>;
using PointFn = std::function<void(const Point&, size_t index, size_t total)>;

// Measures every (scope, impl, N); a failure becomes a Point with status OOM or error and the
// sweep goes on. `on_point` sees each point as it completes (progress, incremental files).
// Order: all flash points first, then the naive ones, each by scope and increasing N. The
// naive path at large N works on tensors of billions of elements; should a kernel fault there
// (a CUDA error is sticky: every later call on the device fails too), the flash series are
// already measured.
std::vector<Point> run_sweep(const Settings& s, const MeasureFn& fn, const PointFn& on_point);

// ---- growth exponents ----

struct Exponents {
  chart::LogLogFit all, upper;  // over all ok points, over the upper half of them
};

// The fits of peak bytes against N for one (scope, impl), over its ok points.
Exponents fit_exponents(const std::vector<Point>& points, Scope scope, AttentionImpl impl);

// ---- output ----

// What the numbers mean, for the top of the table and of the CSV.
std::vector<std::string> legend_lines(const Settings& s);
// The measured configuration of one scope, e.g. "attention: B=1 H=16 D=64 bf16 causal".
std::string config_line(const Settings& s, Scope scope);
// The table printed while the sweep runs: a header and one row per point.
std::string table_header();
std::string table_row(const Point& p);
// Per scope: N | naive peak | flash peak | naive/flash | times; then the exponents.
std::string summary(const Settings& s, const std::vector<Point>& points);

// A CSV field, quoted when it holds a comma or a quote (newlines become spaces).
std::string csv_escape(std::string v);
// One row per point, after '#' comment lines saying what each column counts (read it with
// pandas.read_csv(path, comment="#")).
void write_csv(std::ostream& os, const Settings& s, const std::vector<Point>& points);

// The chart: peak bytes against N, one line per (scope, impl), with the upper-half fits.
chart::Chart make_chart(const Settings& s, const std::vector<Point>& points);

}  // namespace fg::memprofile
