// Memory experiments over the sequence length (train/memprofile.h).
#include "train/memprofile.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <new>
#include <sstream>

#include "autograd/functions.h"
#include "train/optim.h"

#ifdef FLASHGRAD_WITH_CUDA
#include "core/cuda_device.h"
#endif

namespace fg::memprofile {

namespace {

using clock = std::chrono::steady_clock;
double ms_since(clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
}
double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
size_t grad_bytes(const std::vector<Tensor>& ts) {
  size_t b = 0;
  for (const Tensor& t : ts)
    if (t.grad().defined()) b += t.grad().nbytes();
  return b;
}

// An empty point of (scope, impl, N), status ok.
Point point_at(Scope scope, AttentionImpl impl, int64_t N) {
  Point p;
  p.scope = scope;
  p.impl = impl;
  p.seq_len = N;
  return p;
}

// Runs the step once for memory (reading the counters after the forward, after the backward
// and after `update`), then `reps` times for the clock. `forward` returns the tensor to call
// backward on; `update` is what a training step does with the gradients (the optimizer step:
// inside the measured peak); `clear` drops the gradients for the next run (outside it).
template <typename Forward, typename Backward, typename Update, typename Clear>
void measure_step(const Settings& s, Point& pt, const std::vector<Tensor>& grad_holders,
                  Forward forward, Backward backward, Update update, Clear clear) {
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
    update();
    synchronize(dev);
    const MemoryStats st = memory_stats(dev);
    pt.peak_bytes = st.peak_allocated - pt.base_bytes;
    pt.peak_reserved_bytes = st.peak_reserved;
    pt.device_total_bytes = st.device_total;
    pt.device_used_bytes = st.device_total >= st.device_free ? st.device_total - st.device_free : 0;
    clear();
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
      update();
      clear();
    }
    synchronize(dev);
    times.push_back(ms_since(t));
  }
  pt.timed_reps = int(times.size());
  pt.ms_per_step = times.empty() ? first_ms : median(times);
}

std::string fmt_ms(double ms) {
  if (!std::isfinite(ms)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.3f" : ms < 1000 ? "%.1f" : "%.0f", ms);
  return buf;
}
std::string fmt_slope(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

}  // namespace

const char* scope_name(Scope s) { return s == Scope::attention ? "attention" : "train-step"; }

const char* status_name(Status s) {
  return s == Status::ok ? "ok" : s == Status::oom ? "OOM" : "error";
}

// ---- settings ----

Settings settings_for(Device device) {
  const bool cuda = device.is_cuda();
  Settings s;
  s.device = device;
  s.device_description = describe_device(device);
  s.lengths = doubling_lengths(cuda ? 256 : 64, cuda ? 65536 : 1024);
  s.heads = cuda ? 16 : 4;
  s.dtype = cuda ? DType::bf16 : DType::f32;
  s.n_embd = cuda ? 256 : 128;
  s.reps = cuda ? 3 : 1;
  return s;
}

void check_settings(const Settings& s) {
  FG_CHECK(!s.lengths.empty(), "memprofile: no sequence lengths to measure");
  FG_CHECK(s.batch > 0 && s.heads > 0 && s.head_dim > 0, "memprofile: --batch, --heads and "
           "--head-dim must be positive");
  FG_CHECK(is_floating(s.dtype), "memprofile: --dtype must be a floating type, got ",
           dtype_name(s.dtype));
  FG_CHECK(s.dropout >= 0 && s.dropout < 1, "memprofile: --dropout must be in [0, 1), got ",
           s.dropout);
  FG_CHECK(s.n_layer > 0 && s.train_batch > 0 && s.vocab > 1,
           "memprofile: --layers, --train-batch must be positive and --vocab at least 2");
  if (std::find(s.scopes.begin(), s.scopes.end(), Scope::train_step) != s.scopes.end())
    train_step_config(s, AttentionImpl::flash, s.lengths.front());
}

std::string describe_device(Device d) {
  std::string s = d.str();
#ifdef FLASHGRAD_WITH_CUDA
  if (d.is_cuda()) {
    try {
      const CudaDeviceInfo& info = cuda_device_info(d.index);
      s += " (" + info.name + ", " + format_bytes(info.total_memory) + ")";
    } catch (const Error&) {
      // No such device: the description stays the bare name; measuring will say what failed.
    }
  }
#endif
  if (d.is_cpu()) {
    const MemoryStats st = memory_stats(d);
    s += " (" + format_bytes(st.device_total) + " RAM)";
  }
  return s;
}

std::vector<int64_t> doubling_lengths(int64_t min_len, int64_t max_len) {
  FG_CHECK(min_len > 0 && max_len >= min_len, "memprofile: need 0 < --min-len <= --max-len, got ",
           min_len, " and ", max_len);
  std::vector<int64_t> v;
  for (int64_t n = min_len; n <= max_len; n *= 2) v.push_back(n);
  return v;
}

std::vector<int64_t> explicit_lengths(std::vector<int64_t> lengths) {
  for (int64_t n : lengths) FG_CHECK(n > 0, "memprofile: --lengths must be positive, got ", n);
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  return lengths;
}

// ---- measuring one point ----

Point measure_attention(const Settings& s, AttentionImpl impl, int64_t N) {
  Point pt = point_at(Scope::attention, impl, N);
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
  measure_step(
      s, pt, {q, k, v}, [&] { return scaled_dot_product_attention(q, k, v, opt); },
      [&](const Tensor& o) { o.backward(dout); }, [] {},
      [&] {
        q.zero_grad();
        k.zero_grad();
        v.zero_grad();
      });
  return pt;
}

nn::GPTConfig train_step_config(const Settings& s, AttentionImpl impl, int64_t N) {
  nn::GPTConfig mc;
  mc.vocab_size(s.vocab).block_size(N).n_layer(s.n_layer).n_head(s.n_head).n_embd(s.n_embd)
      .dropout(s.dropout).attn(impl).seed(1337);
  mc.validate();
  return mc;
}

Point measure_train_step(const Settings& s, AttentionImpl impl, int64_t N) {
  Point pt = point_at(Scope::train_step, impl, N);
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
  measure_step(
      s, pt, params, [&] { return model->loss(idx, targets); },
      [&](const Tensor& loss) { loss.backward(); }, [&] { opt.step(); },
      [&] { opt.zero_grad(); });
  return pt;
}

Point measure(const Settings& s, Scope scope, AttentionImpl impl, int64_t N) {
  return scope == Scope::attention ? measure_attention(s, impl, N) : measure_train_step(s, impl, N);
}

void warm_up(const Settings& s) {
  const int64_t n = std::min<int64_t>(s.lengths.front(), 128);
  Settings w = s;
  w.reps = 0;
  for (Scope sc : s.scopes)
    for (AttentionImpl im : s.impls) {
      try {
        measure(w, sc, im, n);
      } catch (const std::exception&) {
      }
      release_memory(s.device);
    }
}

// ---- the sweep ----

bool looks_like_oom(const std::string& msg) {
  std::string m = msg;
  std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return m.find("out of memory") != std::string::npos ||
         m.find("memoryallocation") != std::string::npos ||
         m.find("alloc_failed") != std::string::npos || m.find("bad_alloc") != std::string::npos;
}

void release_memory(Device d) {
  try {
    synchronize(d);
    empty_cache(d);
  } catch (const std::exception&) {
    // A broken context (after a kernel fault) fails here too; the next point will say so.
  }
}

std::vector<Point> run_sweep(const Settings& s, const MeasureFn& fn, const PointFn& on_point) {
  std::vector<Point> points;
  const size_t total = s.scopes.size() * s.impls.size() * s.lengths.size();
  std::vector<AttentionImpl> impls = s.impls;
  std::stable_partition(impls.begin(), impls.end(),
                        [](AttentionImpl i) { return i == AttentionImpl::flash; });
  for (AttentionImpl impl : impls) {
    for (Scope scope : s.scopes) {
      for (int64_t N : s.lengths) {
        Point p = point_at(scope, impl, N);
        auto failed = [&](Status st, const std::string& msg) {
          p = point_at(scope, impl, N);
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

Exponents fit_exponents(const std::vector<Point>& points, Scope scope, AttentionImpl impl) {
  std::vector<std::pair<double, double>> xy;
  for (const Point& p : points)
    if (p.scope == scope && p.impl == impl && p.status == Status::ok && p.peak_bytes > 0)
      xy.emplace_back(double(p.seq_len), double(p.peak_bytes));
  return {chart::fit_log_log(xy), chart::fit_log_log_upper_half(xy)};
}

// ---- output ----

std::vector<std::string> legend_lines(const Settings& s) {
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

std::string config_line(const Settings& s, Scope scope) {
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

std::string table_header() {
  char b[256];
  std::snprintf(b, sizeof b, "%-10s %-5s %7s %6s %11s %11s %11s %11s %11s %23s %9s", "scope",
                "impl", "N", "status", "peak", "fwd", "saved", "grads", "reserved",
                "device used/total", "ms/step");
  return b;
}

std::string table_row(const Point& p) {
  char b[512];
  if (p.status != Status::ok) {
    std::string why = p.message.substr(0, 90);
    std::replace(why.begin(), why.end(), '\n', ' ');
    std::snprintf(b, sizeof b, "%-10s %-5s %7lld %6s   %s", scope_name(p.scope),
                  attention_impl_name(p.impl), (long long)p.seq_len, status_name(p.status),
                  why.c_str());
    return b;
  }
  const std::string dev = format_bytes(p.device_used_bytes) + " / " + format_bytes(p.device_total_bytes);
  std::snprintf(b, sizeof b, "%-10s %-5s %7lld %6s %11s %11s %11s %11s %11s %23s %9s",
                scope_name(p.scope), attention_impl_name(p.impl), (long long)p.seq_len, "ok",
                format_bytes(p.peak_bytes).c_str(), format_bytes(p.forward_peak_bytes).c_str(),
                format_bytes(p.saved_bytes).c_str(), format_bytes(p.grad_bytes).c_str(),
                format_bytes(p.peak_reserved_bytes).c_str(), dev.c_str(), fmt_ms(p.ms_per_step).c_str());
  return b;
}

std::string summary(const Settings& s, const std::vector<Point>& points) {
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

std::string csv_escape(std::string v) {
  std::replace(v.begin(), v.end(), '\n', ' ');
  if (v.find_first_of(",\"") == std::string::npos) return v;
  std::string o = "\"";
  for (char c : v) {
    if (c == '"') o += '"';
    o += c;
  }
  return o + "\"";
}

void write_csv(std::ostream& os, const Settings& s, const std::vector<Point>& points) {
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

chart::Chart make_chart(const Settings& s, const std::vector<Point>& points) {
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
