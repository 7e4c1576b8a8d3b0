// The memory experiments behind `flashgrad memprofile`: how the memory of attention grows with
// the sequence length N, naive (materialises N x N: O(N^2)) against flash (O(N)).
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
// Header-only (like examples/svg_chart.h) so that tests/test_memprofile.cpp can use it: the
// tests link the flashgrad library, not the files of examples/.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <new>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/attention.h"
#include "autograd/functions.h"
#include "examples/svg_chart.h"
#include "nn/gpt.h"
#include "train/optim.h"

namespace fg::memprofile {

enum class Scope { attention, train_step };
inline const char* scope_name(Scope s) { return s == Scope::attention ? "attention" : "train-step"; }

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

// The doubling lengths min, 2 min, ... up to max (inclusive when it is on the ladder).
inline std::vector<int64_t> doubling_lengths(int64_t min_len, int64_t max_len) {
  FG_CHECK(min_len > 0 && max_len >= min_len, "memprofile: need 0 < --min-len <= --max-len, got ",
           min_len, " and ", max_len);
  std::vector<int64_t> v;
  for (int64_t n = min_len; n <= max_len; n *= 2) v.push_back(n);
  return v;
}

enum class Status { ok, oom, error };
inline const char* status_name(Status s) {
  return s == Status::ok ? "ok" : s == Status::oom ? "OOM" : "error";
}

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

namespace detail {

using clock = std::chrono::steady_clock;
inline double ms_since(clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
}
inline double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
inline size_t grad_bytes(const std::vector<Tensor>& ts) {
  size_t b = 0;
  for (const Tensor& t : ts)
    if (t.grad().defined()) b += t.grad().nbytes();
  return b;
}

// Runs the step once for memory (with `after_forward` reading the counters between forward
// and backward), then `reps` times for the clock. `forward` returns the tensor to call
// backward on; `finish` does what follows backward (optimizer step, clearing gradients).
template <typename Forward, typename Backward, typename Finish>
void measure_step(const Settings& s, Point& pt, const std::vector<Tensor>& grad_holders,
                  Forward forward, Backward backward, Finish finish) {
  const Device dev = s.device;
  synchronize(dev);
  pt.base_bytes = memory_stats(dev).allocated;
  reset_peak_memory(dev);
  const auto t0 = clock::now();
  {
    Tensor out = forward();
    synchronize(dev);
    pt.forward_peak_bytes = memory_stats(dev).peak_allocated - pt.base_bytes;
    pt.saved_bytes = saved_bytes_for_backward(out);
    backward(out);
    synchronize(dev);
    pt.grad_bytes = grad_bytes(grad_holders);
    const MemoryStats st = memory_stats(dev);
    pt.peak_bytes = st.peak_allocated - pt.base_bytes;
    pt.peak_reserved_bytes = st.peak_reserved;
    pt.device_total_bytes = st.device_total;
    pt.device_used_bytes = st.device_total >= st.device_free ? st.device_total - st.device_free : 0;
    finish();
    synchronize(dev);
  }
  const double first_ms = ms_since(t0);
  std::vector<double> times;
  for (int r = 0; r < s.reps; ++r) {
    synchronize(dev);
    const auto t = clock::now();
    {
      Tensor out = forward();
      backward(out);
      finish();
    }
    synchronize(dev);
    times.push_back(ms_since(t));
  }
  pt.timed_reps = int(times.size());
  pt.ms_per_step = times.empty() ? first_ms : median(times);
}

}  // namespace detail

// One forward + backward of the attention node at length N.
inline Point measure_attention(const Settings& s, AttentionImpl impl, int64_t N) {
  Point pt;
  pt.scope = Scope::attention;
  pt.impl = impl;
  pt.seq_len = N;
  const TensorOptions to = TensorOptions(s.dtype).device(s.device);
  const Shape shape{s.batch, N, s.heads, s.head_dim};
  Generator gen(1000 + uint64_t(N));
  Tensor q = randn(shape, to, &gen), k = randn(shape, to, &gen), v = randn(shape, to, &gen);
  Tensor dout = randn(shape, to, &gen);
  q.set_requires_grad(true);
  k.set_requires_grad(true);
  v.set_requires_grad(true);
  AttentionOptions opt;
  opt.impl(impl).causal(s.causal).dropout(s.dropout).seed(2024, 0).deterministic(s.deterministic);
  detail::measure_step(
      s, pt, {q, k, v}, [&] { return scaled_dot_product_attention(q, k, v, opt); },
      [&](const Tensor& o) { o.backward(dout); },
      [&] {
        q.zero_grad();
        k.zero_grad();
        v.zero_grad();
      });
  return pt;
}

inline nn::GPTConfig train_step_config(const Settings& s, AttentionImpl impl, int64_t N) {
  nn::GPTConfig mc;
  mc.vocab_size(s.vocab).block_size(N).n_layer(s.n_layer).n_head(s.n_head).n_embd(s.n_embd)
      .dropout(s.dropout).attn(impl).seed(1337);
  mc.validate();
  return mc;
}

// One training step of a GPT with context N: loss, backward, AdamW step, zero_grad. 16-bit
// dtypes train as `flashgrad train --dtype bf16` does: the model in 16 bits, fp32 master
// weights in AdamW.
inline Point measure_train_step(const Settings& s, AttentionImpl impl, int64_t N) {
  Point pt;
  pt.scope = Scope::train_step;
  pt.impl = impl;
  pt.seq_len = N;
  const nn::GPTConfig mc = train_step_config(s, impl, N);
  auto model = std::make_shared<nn::GPT>(mc);
  model->to(s.device);
  const bool low = s.dtype == DType::bf16 || s.dtype == DType::f16;
  std::map<std::string, Tensor> fp32;
  if (low) {
    for (auto& [name, p] : model->named_parameters()) fp32[name] = ops::clone(p);
    model->to(s.dtype);
  } else if (s.dtype != DType::f32) {
    model->to(s.dtype);
  }
  model->train();
  train::AdamW opt(model->named_parameters(), train::AdamWOptions().lr(1e-4));
  if (low) opt.load_fp32_weights(fp32);
  fp32.clear();
  const std::vector<Tensor> params = model->parameters();
  Generator gen(77 + uint64_t(N));
  const TensorOptions ti = TensorOptions(DType::i64).device(s.device);
  Tensor idx = randint(0, s.vocab, {s.train_batch, N}, ti, &gen);
  Tensor targets = randint(0, s.vocab, {s.train_batch, N}, ti, &gen);
  detail::measure_step(
      s, pt, params, [&] { return model->loss(idx, targets); },
      [&](const Tensor& loss) { loss.backward(); },
      [&] {
        opt.step();
        opt.zero_grad();
      });
  return pt;
}

inline Point measure(const Settings& s, Scope scope, AttentionImpl impl, int64_t N) {
  return scope == Scope::attention ? measure_attention(s, impl, N) : measure_train_step(s, impl, N);
}

// ---- the sweep ----

// True for messages of failed allocations that do not come as OutOfMemoryError (a kernel's
// or a library's own allocation).
inline bool looks_like_oom(const std::string& msg) {
  std::string m = msg;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return m.find("out of memory") != std::string::npos ||
         m.find("memoryallocation") != std::string::npos ||
         m.find("alloc_failed") != std::string::npos || m.find("bad_alloc") != std::string::npos;
}

// Frees what the allocator caches so that the next point starts from a clean device.
inline void release_memory(Device d) {
  try {
    synchronize(d);
    empty_cache(d);
  } catch (const std::exception&) {
    // A broken context (after a kernel fault) fails here too; the next point will say so.
  }
}

using MeasureFn = std::function<Point(Scope, AttentionImpl, int64_t)>;
using PointFn = std::function<void(const Point&, size_t index, size_t total)>;

// Measures every (scope, impl, N); a failure becomes a Point with status OOM or error and the
// sweep goes on. `on_point` sees each point as it completes (progress, incremental files).
// Order: all flash points first, then the naive ones, each by scope and increasing N. The
// naive path at large N works on tensors of billions of elements; should a kernel fault there
// (a CUDA error is sticky: every later call on the device fails too), the flash series are
// already measured.
inline std::vector<Point> run_sweep(const Settings& s, const MeasureFn& fn, const PointFn& on_point) {
  std::vector<Point> points;
  const size_t total = s.scopes.size() * s.impls.size() * s.lengths.size();
  std::vector<AttentionImpl> impls = s.impls;
  std::stable_partition(impls.begin(), impls.end(),
                        [](AttentionImpl i) { return i == AttentionImpl::flash; });
  for (AttentionImpl impl : impls) {
    for (Scope scope : s.scopes) {
      for (int64_t N : s.lengths) {
        Point p;
        p.scope = scope;
        p.impl = impl;
        p.seq_len = N;
        auto failed = [&](Status st, const std::string& msg) {
          p = Point();
          p.scope = scope;
          p.impl = impl;
          p.seq_len = N;
          p.status = st;
          p.message = msg;
        };
        release_memory(s.device);
        try {
          p = fn(scope, impl, N);
          p.status = Status::ok;
        } catch (const OutOfMemoryError& e) {
          failed(Status::oom, e.what());
        } catch (const std::bad_alloc& e) {
          failed(Status::oom, std::string("std::bad_alloc: ") + e.what());
        } catch (const std::exception& e) {
          failed(looks_like_oom(e.what()) ? Status::oom : Status::error, e.what());
        }
        release_memory(s.device);
        points.push_back(p);
        if (on_point) on_point(points.back(), points.size(), total);
      }
    }
  }
  return points;
}

// ---- growth exponents ----

struct Exponents {
  chart::LogLogFit all, upper;  // over all ok points, over the upper half of them
};

// The fits of peak bytes against N for one (scope, impl), over its ok points.
inline Exponents fit_exponents(const std::vector<Point>& points, Scope scope, AttentionImpl impl) {
  std::vector<std::pair<double, double>> xy;
  for (const Point& p : points)
    if (p.scope == scope && p.impl == impl && p.status == Status::ok && p.peak_bytes > 0)
      xy.emplace_back(double(p.seq_len), double(p.peak_bytes));
  return {chart::fit_log_log(xy), chart::fit_log_log_upper_half(xy)};
}

// ---- output ----

inline std::string fmt_bytes(size_t b) { return format_bytes(b); }
inline std::string fmt_ms(double ms) {
  if (!std::isfinite(ms)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.3f" : ms < 1000 ? "%.1f" : "%.0f", ms);
  return buf;
}
inline std::string fmt_slope(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// What the numbers mean, for the top of the table and of the CSV.
inline std::vector<std::string> legend_lines(const Settings& s) {
  return {
      "peak   = max bytes allocated during the step - bytes allocated before it (inputs q, k, v, "
      "dO / model + AdamW state + batch not counted, gradients, outputs and temporaries counted)",
      "fwd    = the same peak taken after the forward pass only",
      "saved  = bytes the graph keeps for backward after the forward (distinct storages, inputs "
      "a node saves included)",
      "grads  = bytes of the gradients the step leaves (dQ, dK, dV / parameter gradients)",
      "reserved = the allocator's peak reserved bytes during the step (everything it holds, "
      "inputs included; CUDA blocks are rounded up and cached)",
      "device = the device's own used memory (total - free) right after the step, before "
      "empty_cache" + std::string(s.device.is_cpu() ? " (CPU: MemTotal - MemAvailable)" : ""),
      s.reps > 0 ? "ms     = wall time of one step, median of " + std::to_string(s.reps) +
                       " synchronized runs after the memory run"
                 : std::string("ms     = wall time of the memory run (no timed runs)"),
  };
}

inline std::string config_line(const Settings& s, Scope scope) {
  std::ostringstream os;
  if (scope == Scope::attention)
    os << "attention: B=" << s.batch << " H=" << s.heads << " D=" << s.head_dim << " "
       << dtype_name(s.dtype) << (s.causal ? " causal" : " non-causal")
       << (s.deterministic ? ", deterministic backward" : "");
  else
    os << "train-step: GPT " << s.n_layer << " layers, width " << s.n_embd << ", " << s.n_head
       << " heads, vocab " << s.vocab << ", batch " << s.train_batch << ", "
       << dtype_name(s.dtype) << ", AdamW";
  if (s.dropout > 0) os << ", dropout " << s.dropout;
  return os.str();
}

inline std::string table_header() {
  char b[256];
  std::snprintf(b, sizeof b, "%-10s %-5s %7s %6s %11s %11s %11s %11s %11s %23s %9s", "scope",
                "impl", "N", "status", "peak", "fwd", "saved", "grads", "reserved",
                "device used/total", "ms/step");
  return b;
}

inline std::string table_row(const Point& p) {
  char b[512];
  if (p.status != Status::ok) {
    std::string why = p.message.substr(0, 90);
    std::replace(why.begin(), why.end(), '\n', ' ');
    std::snprintf(b, sizeof b, "%-10s %-5s %7lld %6s   %s", scope_name(p.scope),
                  attention_impl_name(p.impl), (long long)p.seq_len, status_name(p.status),
                  why.c_str());
    return b;
  }
  const std::string dev = fmt_bytes(p.device_used_bytes) + " / " + fmt_bytes(p.device_total_bytes);
  std::snprintf(b, sizeof b, "%-10s %-5s %7lld %6s %11s %11s %11s %11s %11s %23s %9s",
                scope_name(p.scope), attention_impl_name(p.impl), (long long)p.seq_len, "ok",
                fmt_bytes(p.peak_bytes).c_str(), fmt_bytes(p.forward_peak_bytes).c_str(),
                fmt_bytes(p.saved_bytes).c_str(), fmt_bytes(p.grad_bytes).c_str(),
                fmt_bytes(p.peak_reserved_bytes).c_str(), dev.c_str(), fmt_ms(p.ms_per_step).c_str());
  return b;
}

// Per scope: N | naive peak | flash peak | naive/flash | times; then the exponents.
inline std::string summary(const Settings& s, const std::vector<Point>& points) {
  std::ostringstream os;
  auto find = [&](Scope sc, AttentionImpl im, int64_t N) -> const Point* {
    for (const Point& p : points)
      if (p.scope == sc && p.impl == im && p.seq_len == N) return &p;
    return nullptr;
  };
  auto cell = [](const Point* p) -> std::string {
    if (!p) return "-";
    if (p->status == Status::oom) return "OOM";
    if (p->status == Status::error) return "error";
    return format_bytes(p->peak_bytes);
  };
  for (Scope sc : s.scopes) {
    os << "\n" << config_line(s, sc) << "\n";
    os << "  peak bytes of one " << (sc == Scope::attention ? "forward + backward" : "training step")
       << " beyond the " << (sc == Scope::attention ? "inputs" : "model, optimizer state and batch")
       << " (gradients counted)\n";
    char b[256];
    std::snprintf(b, sizeof b, "  %8s", "N");
    os << b;
    for (AttentionImpl im : s.impls) {
      std::snprintf(b, sizeof b, " %12s %10s", (std::string(attention_impl_name(im)) + " peak").c_str(),
                    (std::string(attention_impl_name(im)) + " ms").c_str());
      os << b;
    }
    const bool both = s.impls.size() == 2;
    if (both) os << "  naive/flash";
    os << "\n";
    for (int64_t N : s.lengths) {
      std::snprintf(b, sizeof b, "  %8lld", (long long)N);
      os << b;
      for (AttentionImpl im : s.impls) {
        const Point* p = find(sc, im, N);
        std::snprintf(b, sizeof b, " %12s %10s", cell(p).c_str(),
                      p && p->status == Status::ok ? fmt_ms(p->ms_per_step).c_str() : "-");
        os << b;
      }
      if (both) {
        const Point* a = find(sc, AttentionImpl::naive, N);
        const Point* f = find(sc, AttentionImpl::flash, N);
        if (a && f && a->status == Status::ok && f->status == Status::ok && f->peak_bytes > 0) {
          std::snprintf(b, sizeof b, "  %10.1fx", double(a->peak_bytes) / double(f->peak_bytes));
          os << b;
        }
      }
      os << "\n";
    }
    for (AttentionImpl im : s.impls) {
      const Exponents e = fit_exponents(points, sc, im);
      os << "  growth exponent of " << scope_name(sc) << " " << attention_impl_name(im)
         << " peak (slope of log bytes vs log N): " << fmt_slope(e.upper.slope)
         << " over the upper half (" << e.upper.points << " points), " << fmt_slope(e.all.slope)
         << " over all " << e.all.points << " points\n";
    }
  }
  return os.str();
}

inline std::string csv_escape(std::string v) {
  std::replace(v.begin(), v.end(), '\n', ' ');
  if (v.find_first_of(",\"") == std::string::npos) return v;
  std::string o = "\"";
  for (char c : v) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

// One row per point, after '#' comment lines saying what each column counts (read it with
// pandas.read_csv(path, comment="#")).
inline void write_csv(std::ostream& os, const Settings& s, const std::vector<Point>& points) {
  os << "# flashgrad memprofile on " << s.device_description << "\n";
  for (Scope sc : s.scopes) os << "# " << config_line(s, sc) << "\n";
  for (const std::string& l : legend_lines(s)) os << "# " << l << "\n";
  os << "# bytes are exact counts from flashgrad's allocator, ms_per_step is the median of "
        "timed_reps runs\n";
  os << "scope,impl,seq_len,batch,heads,head_dim,dtype,causal,dropout,n_layer,n_embd,status,"
        "peak_extra_bytes,forward_peak_extra_bytes,saved_for_backward_bytes,grad_bytes,"
        "base_bytes,peak_reserved_bytes,device_used_bytes,device_total_bytes,ms_per_step,"
        "timed_reps,message\n";
  for (const Point& p : points) {
    const bool att = p.scope == Scope::attention;
    const bool ok = p.status == Status::ok;
    os << scope_name(p.scope) << ',' << attention_impl_name(p.impl) << ',' << p.seq_len << ','
       << (att ? s.batch : s.train_batch) << ',' << (att ? s.heads : s.n_head) << ','
       << (att ? s.head_dim : s.n_embd / s.n_head) << ',' << dtype_name(s.dtype) << ','
       << (att ? int(s.causal) : 1) << ',' << s.dropout << ',' << (att ? 0 : s.n_layer) << ','
       << (att ? 0 : s.n_embd) << ',' << status_name(p.status) << ',';
    if (ok) {
      char ms[32];
      std::snprintf(ms, sizeof ms, "%.4f", p.ms_per_step);
      os << p.peak_bytes << ',' << p.forward_peak_bytes << ',' << p.saved_bytes << ','
         << p.grad_bytes << ',' << p.base_bytes << ',' << p.peak_reserved_bytes << ','
         << p.device_used_bytes << ',' << p.device_total_bytes << ',' << ms << ','
         << p.timed_reps << ",\n";
    } else {
      os << ",,,,,,,,,," << csv_escape(p.message.substr(0, 300)) << "\n";
    }
  }
}

// The chart: peak bytes against N, one line per (scope, impl), with the upper-half fits.
inline chart::Chart make_chart(const Settings& s, const std::vector<Point>& points) {
  chart::Chart c;
  c.title = "Peak memory vs sequence length: naive O(N\u00b2) vs flash O(N) attention";
  std::string sub = s.device_description;
  for (Scope sc : s.scopes) sub += "\n" + config_line(s, sc);
  sub += "\npeak = max allocated during the step minus allocated before it (gradients counted)";
  c.subtitle = sub;
  c.y_label = "peak bytes beyond the inputs";
  for (Scope sc : s.scopes) {
    for (AttentionImpl im : s.impls) {
      chart::Series se;
      const bool flash = im == AttentionImpl::flash;
      se.name = std::string(scope_name(sc)) + ", " + attention_impl_name(im);
      se.dashed = sc == Scope::train_step;
      se.color = sc == Scope::attention ? (flash ? "#1f77b4" : "#d62728")
                                        : (flash ? "#2ca02c" : "#ff7f0e");
      for (const Point& p : points) {
        if (p.scope != sc || p.impl != im) continue;
        if (p.status == Status::ok && p.peak_bytes > 0)
          se.points.emplace_back(double(p.seq_len), double(p.peak_bytes));
        else if (p.status == Status::oom)
          se.oom_x.push_back(double(p.seq_len));
      }
      const Exponents e = fit_exponents(points, sc, im);
      se.fit = e.upper;
      if (e.upper.ok())
        se.fit_note = "(upper half of N; all points: " + fmt_slope(e.all.slope) + ")";
      c.series.push_back(se);
    }
  }
  return c;
}

}  // namespace fg::memprofile
