// Tests of the memory-profiling module (train/memprofile.h, train/svg_chart.h): the
// growth-exponent fit on synthetic data, the SVG and CSV writers, the sweep's handling of
// out-of-memory and other failures, and a small real sweep on the CPU in which flash memory
// must grow linearly and naive memory quadratically.
#include <cmath>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "train/memprofile.h"
#include "train/svg_chart.h"
#include "support/test_util.h"

using namespace fg;
using namespace fg::memprofile;

namespace {

size_t count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) out.push_back(l);
  return out;
}

Point ok_point(Scope sc, AttentionImpl im, int64_t N, size_t peak) {
  Point p;
  p.scope = sc;
  p.impl = im;
  p.seq_len = N;
  p.peak_bytes = peak;
  p.forward_peak_bytes = peak / 2;
  p.saved_bytes = peak / 3;
  p.grad_bytes = 3 * 1024 * size_t(N);
  p.base_bytes = 4 * 1024 * size_t(N);
  p.peak_reserved_bytes = peak + 4096;
  p.device_used_bytes = 1 << 30;
  p.device_total_bytes = size_t(8) << 30;
  p.ms_per_step = 1.25;
  p.timed_reps = 2;
  return p;
}

}  // namespace

TEST_CASE("log-log fit recovers exponents of synthetic power laws", "[memprofile]") {
  std::vector<std::pair<double, double>> quad, lin;
  for (double n = 256; n <= 65536; n *= 2) {
    quad.emplace_back(n, 3.0 * n * n);
    lin.emplace_back(n, 40.0 * n);
  }
  auto fq = chart::fit_log_log(quad), fl = chart::fit_log_log(lin);
  REQUIRE(fq.ok());
  REQUIRE(fq.slope == Approx(2.0).margin(1e-12));
  REQUIRE(fl.slope == Approx(1.0).margin(1e-12));
  REQUIRE(fq.at(1000) == Approx(3e6).epsilon(1e-9));
  REQUIRE(fq.x_min == 256);
  REQUIRE(fq.x_max == 65536);
  REQUIRE(fq.points == quad.size());

  // N^2 + a large linear term: the full fit is pulled below 2, the upper half is close to 2.
  std::vector<std::pair<double, double>> mixed;
  for (double n = 64; n <= 65536; n *= 2) mixed.emplace_back(n, n * n + 200.0 * n + 1e6);
  auto all = chart::fit_log_log(mixed), upper = chart::fit_log_log_upper_half(mixed);
  REQUIRE(all.slope < 1.7);
  REQUIRE(upper.slope > 1.85);
  REQUIRE(upper.slope < 2.0);
  REQUIRE(upper.points == 6);  // 11 points: the upper 6
  REQUIRE(upper.x_min == 2048);

  // Multiplicative noise of a few percent moves the slope by little.
  std::vector<std::pair<double, double>> noisy;
  const double wobble[] = {1.03, 0.98, 1.01, 0.97, 1.02, 0.99, 1.0, 1.04, 0.96};
  int i = 0;
  for (double n = 256; n <= 65536; n *= 2) noisy.emplace_back(n, 7.0 * n * wobble[i++]);
  REQUIRE(chart::fit_log_log(noisy).slope == Approx(1.0).margin(0.03));

  // Order does not matter; too few or degenerate points give no fit.
  std::reverse(quad.begin(), quad.end());
  REQUIRE(chart::fit_log_log_upper_half(quad).slope == Approx(2.0).margin(1e-12));
  REQUIRE_FALSE(chart::fit_log_log({}).ok());
  REQUIRE_FALSE(chart::fit_log_log({{256, 10}}).ok());
  REQUIRE_FALSE(chart::fit_log_log({{256, 10}, {256, 20}}).ok());
  REQUIRE(chart::fit_log_log_upper_half({{256, 10}, {512, 40}}).slope == Approx(2.0));
}

TEST_CASE("fit_exponents uses only the ok points of one series", "[memprofile]") {
  std::vector<Point> pts;
  for (int64_t n = 256; n <= 4096; n *= 2) {
    pts.push_back(ok_point(Scope::attention, AttentionImpl::naive, n, size_t(n) * size_t(n)));
    pts.push_back(ok_point(Scope::attention, AttentionImpl::flash, n, size_t(n) * 100));
  }
  Point oom;
  oom.impl = AttentionImpl::naive;
  oom.seq_len = 8192;
  oom.status = Status::oom;
  pts.push_back(oom);
  Exponents naive = fit_exponents(pts, Scope::attention, AttentionImpl::naive);
  Exponents flash = fit_exponents(pts, Scope::attention, AttentionImpl::flash);
  REQUIRE(naive.all.points == 5);
  REQUIRE(naive.all.slope == Approx(2.0));
  REQUIRE(naive.upper.points == 3);
  REQUIRE(flash.upper.slope == Approx(1.0));
  REQUIRE_FALSE(fit_exponents(pts, Scope::train_step, AttentionImpl::flash).all.ok());
}

TEST_CASE("axis labels are exact powers of two", "[memprofile]") {
  REQUIRE(chart::pow2_bytes_label(0) == "1 B");
  REQUIRE(chart::pow2_bytes_label(9) == "512 B");
  REQUIRE(chart::pow2_bytes_label(10) == "1 KiB");
  REQUIRE(chart::pow2_bytes_label(21) == "2 MiB");
  REQUIRE(chart::pow2_bytes_label(30) == "1 GiB");
  REQUIRE(chart::pow2_bytes_label(37) == "128 GiB");
  REQUIRE(chart::pow2_count_label(8) == "256");
  REQUIRE(chart::pow2_count_label(13) == "8192");
  REQUIRE(chart::pow2_count_label(14) == "16K");
  REQUIRE(chart::pow2_count_label(17) == "128K");
  REQUIRE(chart::pow2_count_label(20) == "1M");
  REQUIRE(chart::xml_escape("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;");
}

TEST_CASE("the SVG chart draws every series on log-log axes inside the frame", "[memprofile]") {
  chart::Chart c;
  c.title = "naive <vs> flash & more";
  c.subtitle = "line one\nline two";
  chart::Series naive{"attention, naive", "#d62728", false, {}, {32768, 65536}, {}, ""};
  chart::Series flash{"attention, flash", "#1f77b4", false, {}, {}, {}, ""};
  for (double n = 256; n <= 16384; n *= 2) {
    naive.points.emplace_back(n, 16.0 * n * n);
    flash.points.emplace_back(n, 2048.0 * n);
  }
  for (double n = 32768; n <= 131072; n *= 2) flash.points.emplace_back(n, 2048.0 * n);
  naive.fit = chart::fit_log_log_upper_half(naive.points);
  flash.fit = chart::fit_log_log_upper_half(flash.points);
  chart::Series empty{"train-step, flash", "#2ca02c", true, {}, {}, {}, ""};
  c.series = {naive, flash, empty};
  const std::string svg = chart::render_log_log_svg(c);

  REQUIRE(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  REQUIRE(svg.find("</svg>") != std::string::npos);
  REQUIRE(count(svg, "<text") == count(svg, "</text>"));
  REQUIRE(svg.find("naive &lt;vs&gt; flash &amp; more") != std::string::npos);
  REQUIRE(svg.find("line two") != std::string::npos);
  REQUIRE(count(svg, "<polyline") == 2);  // the empty series draws no line
  REQUIRE(svg.find("growth exponent: 2.00") != std::string::npos);
  REQUIRE(svg.find("growth exponent: 1.00") != std::string::npos);
  REQUIRE(svg.find("growth exponent: n/a") != std::string::npos);
  REQUIRE(svg.find("OOM from N = 32768") != std::string::npos);
  REQUIRE(count(svg, "stroke=\"#d62728\" stroke-width=\"2.5\"") == 2);  // two OOM crosses
  // Tick labels: lengths from 256 to 128K, bytes in binary units.
  REQUIRE(svg.find(">256</text>") != std::string::npos);
  REQUIRE(svg.find(">128K</text>") != std::string::npos);
  REQUIRE(svg.find(" MiB</text>") != std::string::npos);
  REQUIRE(svg.find(" GiB</text>") != std::string::npos);

  // Every polyline vertex lies inside the 960 x 600 canvas; x grows with N and, as both
  // series grow, y (downwards in SVG) falls; equal steps in log N give equal steps in x.
  std::regex poly("<polyline[^>]*points=\"([^\"]*)\"");
  int lines = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), poly); it != std::sregex_iterator(); ++it) {
    std::istringstream is((*it)[1].str());
    std::vector<std::pair<double, double>> v;
    for (std::string xy; is >> xy;) {
      const size_t comma = xy.find(',');
      v.emplace_back(std::stod(xy.substr(0, comma)), std::stod(xy.substr(comma + 1)));
    }
    REQUIRE(v.size() >= 7);
    for (size_t i = 0; i < v.size(); ++i) {
      REQUIRE(v[i].first > 0);
      REQUIRE(v[i].first < 960);
      REQUIRE(v[i].second > 0);
      REQUIRE(v[i].second < 600);
      if (i > 0) {
        REQUIRE(v[i].first > v[i - 1].first);
        REQUIRE(v[i].second < v[i - 1].second);
        REQUIRE(v[i].first - v[i - 1].first == Approx(v[1].first - v[0].first).margin(0.15));
      }
    }
    lines++;
  }
  REQUIRE(lines == 2);

  // An empty chart still renders a frame.
  chart::Chart none;
  const std::string e = chart::render_log_log_svg(none);
  REQUIRE(e.find("</svg>") != std::string::npos);
  REQUIRE(count(e, "<polyline") == 0);
}

TEST_CASE("the quadratic series rises twice as steeply as the linear one", "[memprofile]") {
  chart::Chart c;
  chart::Series q{"q", "#000001", false, {}, {}, {}, ""}, l{"l", "#000002", false, {}, {}, {}, ""};
  for (double n = 256; n <= 4096; n *= 2) {
    q.points.emplace_back(n, n * n);
    l.points.emplace_back(n, 1024.0 * n);
  }
  c.series = {q, l};
  const std::string svg = chart::render_log_log_svg(c);
  auto first_step = [&](const std::string& color) {
    std::regex re("stroke=\"" + color + "\" stroke-width=\"2\" points=\"([0-9.]+),([0-9.]+) ([0-9.]+),([0-9.]+)");
    std::smatch m;
    REQUIRE(std::regex_search(svg, m, re));
    return std::make_pair(std::stod(m[3]) - std::stod(m[1]), std::stod(m[2]) - std::stod(m[4]));
  };
  auto [qdx, qdy] = first_step("#000001");
  auto [ldx, ldy] = first_step("#000002");
  REQUIRE(qdx == Approx(ldx).margin(0.15));
  REQUIRE(qdy == Approx(2 * ldy).margin(0.3));
}

TEST_CASE("the CSV has one row per point and says what is counted", "[memprofile]") {
  Settings s;
  s.device_description = "cpu (test)";
  s.lengths = {256, 512};
  s.scopes = {Scope::attention, Scope::train_step};
  s.batch = 2;
  s.heads = 3;
  s.head_dim = 32;
  s.dtype = DType::bf16;
  s.n_layer = 4;
  s.n_embd = 192;
  s.n_head = 6;
  s.train_batch = 5;
  std::vector<Point> pts{ok_point(Scope::attention, AttentionImpl::naive, 256, 123456789),
                         ok_point(Scope::train_step, AttentionImpl::flash, 512, 42)};
  Point oom;
  oom.impl = AttentionImpl::naive;
  oom.seq_len = 512;
  oom.status = Status::oom;
  oom.message = "CUDA out of memory: tried to allocate 8.00 GiB, \"really\"";
  pts.push_back(oom);
  std::ostringstream os;
  write_csv(os, s, pts);
  const std::vector<std::string> lines = lines_of(os.str());
  size_t header = 0;
  while (header < lines.size() && lines[header].rfind("#", 0) == 0) ++header;
  REQUIRE(header >= 3);
  REQUIRE(os.str().find("gradients, outputs and temporaries counted") != std::string::npos);
  REQUIRE(lines.size() == header + 1 + 3);
  REQUIRE(lines[header].rfind("scope,impl,seq_len,", 0) == 0);
  const size_t columns = count(lines[header], ",") + 1;
  REQUIRE(columns == 23);
  REQUIRE(lines[header + 1] ==
          "attention,naive,256,2,3,32,bf16,1,0,0,0,ok,123456789,61728394,41152263,786432,1048576,"
          "123460885,1073741824,8589934592,1.2500,2,");
  REQUIRE(lines[header + 2].rfind("train-step,flash,512,5,6,32,bf16,1,0,4,192,ok,42,", 0) == 0);
  REQUIRE(lines[header + 3] ==
          "attention,naive,512,2,3,32,bf16,1,0,0,0,OOM,,,,,,,,,,,\"CUDA out of memory: tried "
          "to allocate 8.00 GiB, \"\"really\"\"\"");
  REQUIRE(csv_escape("plain") == "plain");
  REQUIRE(csv_escape("a\nb") == "a b");
}

TEST_CASE("a sweep records OOM and other failures and goes on", "[memprofile]") {
  Settings s;
  s.lengths = doubling_lengths(128, 2048);
  REQUIRE(s.lengths == std::vector<int64_t>{128, 256, 512, 1024, 2048});
  REQUIRE(doubling_lengths(100, 500) == std::vector<int64_t>{100, 200, 400});
  REQUIRE_THROWS_AS(doubling_lengths(0, 10), Error);
  REQUIRE_THROWS_AS(doubling_lengths(64, 32), Error);
  s.scopes = {Scope::attention, Scope::train_step};
  s.impls = {AttentionImpl::naive, AttentionImpl::flash};
  std::vector<size_t> seen_index;
  size_t seen_total = 0;
  auto fake = [](Scope sc, AttentionImpl im, int64_t N) -> Point {
    if (im == AttentionImpl::naive && N >= 1024) throw OutOfMemoryError("CUDA out of memory: x");
    if (im == AttentionImpl::naive && N == 512 && sc == Scope::train_step)
      throw Error("cuBLAS error CUBLAS_STATUS_ALLOC_FAILED in gemm");
    if (im == AttentionImpl::flash && N == 256 && sc == Scope::train_step)
      throw Error("CUDA error: an illegal memory access was encountered");
    if (im == AttentionImpl::flash && N == 2048 && sc == Scope::attention) throw std::bad_alloc();
    const size_t n = size_t(N);
    return ok_point(sc, im, N, im == AttentionImpl::naive ? n * n : 64 * n);
  };
  const auto pts = run_sweep(s, fake, [&](const Point&, size_t i, size_t total) {
    seen_index.push_back(i);
    seen_total = total;
  });
  REQUIRE(pts.size() == 20);
  REQUIRE(seen_total == 20);
  REQUIRE(seen_index.size() == 20);
  REQUIRE(seen_index.front() == 1);
  REQUIRE(seen_index.back() == 20);
  int ok = 0, oom = 0, err = 0;
  for (const Point& p : pts) {
    ok += p.status == Status::ok;
    oom += p.status == Status::oom;
    err += p.status == Status::error;
    if (p.status != Status::ok) REQUIRE_FALSE(p.message.empty());
  }
  REQUIRE(oom == 2 * 2 + 1 + 1);  // naive 1024, 2048 in both scopes; ALLOC_FAILED; bad_alloc
  REQUIRE(err == 1);
  REQUIRE(ok == 20 - 7);
  // Flash first (a naive fault cannot spoil it), then naive; by scope, then by N. The points
  // keep their (scope, impl, N) even when measuring threw.
  for (size_t i = 0; i < pts.size(); ++i) {
    REQUIRE(pts[i].impl == (i < 10 ? AttentionImpl::flash : AttentionImpl::naive));
    REQUIRE(pts[i].scope == (i % 10 < 5 ? Scope::attention : Scope::train_step));
    REQUIRE(pts[i].seq_len == s.lengths[i % 5]);
  }
  REQUIRE(pts[14].status == Status::oom);  // naive attention 2048
  REQUIRE(pts[6].status == Status::error);  // flash train-step 256
  REQUIRE(pts[6].message.find("illegal memory access") != std::string::npos);
  REQUIRE(fit_exponents(pts, Scope::attention, AttentionImpl::naive).all.slope == Approx(2.0));

  // The summary and the chart show the OOM points.
  const std::string sum = summary(s, pts);
  REQUIRE(sum.find("OOM") != std::string::npos);
  REQUIRE(sum.find("growth exponent of attention naive peak") != std::string::npos);
  const chart::Chart c = make_chart(s, pts);
  REQUIRE(c.series.size() == 4);
  REQUIRE(c.series[0].oom_x == std::vector<double>{1024, 2048});
  REQUIRE(c.series[1].oom_x == std::vector<double>{2048});
  REQUIRE(c.series[1].points.size() == 4);
  REQUIRE(c.series[3].points.size() == 4);  // train-step flash: 256 was an error, not OOM
  REQUIRE(c.series[3].oom_x.empty());

  REQUIRE(looks_like_oom("CUDA error: out of memory (cudaErrorMemoryAllocation)"));
  REQUIRE(looks_like_oom("CUBLAS_STATUS_ALLOC_FAILED"));
  REQUIRE_FALSE(looks_like_oom("CUDA error: an illegal memory access was encountered"));
}

FG_TEST_ALL_DEVICES("a real sweep: flash memory grows linearly, naive quadratically", "[memprofile]") {
  Settings s;
  s.device = device;
  s.device_description = device.str();
  // On CUDA, longer sequences so that the flash backward's fixed-size scratch is negligible.
  const bool cuda = device.is_cuda();
  s.lengths = cuda ? std::vector<int64_t>{1024, 2048, 4096} : std::vector<int64_t>{128, 256, 512};
  s.batch = 1;
  s.heads = 2;
  s.head_dim = 32;
  s.dtype = cuda ? DType::bf16 : DType::f32;
  s.causal = true;
  s.reps = 1;
  const auto pts = run_sweep(s, [&](Scope sc, AttentionImpl im, int64_t N) { return measure(s, sc, im, N); }, {});
  REQUIRE(pts.size() == 6);
  const size_t bnhd4 = 1 * 2 * 32 * dtype_size(s.dtype);  // bytes per position of [B, N, H, D]
  for (const Point& p : pts) {
    INFO(table_row(p));
    REQUIRE(p.status == Status::ok);
    const size_t io = bnhd4 * size_t(p.seq_len);
    REQUIRE(p.grad_bytes == 3 * io);  // dQ, dK, dV
    REQUIRE(p.base_bytes >= 4 * io);  // q, k, v, dO
    REQUIRE(p.peak_bytes >= p.grad_bytes + io);  // the gradients and O at the end
    REQUIRE(p.peak_bytes >= p.forward_peak_bytes);
    REQUIRE(p.forward_peak_bytes >= io);
    REQUIRE(p.saved_bytes >= 4 * io);  // q, k, v and O (naive: the products) at least
    REQUIRE(p.device_total_bytes > 0);
    REQUIRE(p.timed_reps == 1);
    REQUIRE(std::isfinite(p.ms_per_step));
    REQUIRE(p.ms_per_step > 0);
  }
  // The flash node saves q, k, v, O and the log-sum-exp: exactly linear in N.
  const Point &f256 = pts[1], &f512 = pts[2], &n256 = pts[4], &n512 = pts[5];  // flash first
  REQUIRE(f512.impl == AttentionImpl::flash);
  REQUIRE(f512.saved_bytes == 2 * f256.saved_bytes);
  REQUIRE(n512.saved_bytes > 3 * n256.saved_bytes);  // N x N probabilities dominate
  REQUIRE(n512.peak_bytes > 4 * f512.peak_bytes);
  const Exponents naive = fit_exponents(pts, Scope::attention, AttentionImpl::naive);
  const Exponents flash = fit_exponents(pts, Scope::attention, AttentionImpl::flash);
  INFO("naive exponent " << naive.upper.slope << ", flash exponent " << flash.upper.slope);
  REQUIRE(naive.upper.slope > 1.75);
  REQUIRE(naive.upper.slope < 2.1);
  REQUIRE(flash.upper.slope > (cuda ? 0.85 : 0.9));
  REQUIRE(flash.upper.slope < 1.1);
}

FG_TEST_ALL_DEVICES("a train step of a tiny GPT is measured for both implementations", "[memprofile]") {
  Settings s;
  s.device = device;
  s.lengths = {64, 128};
  s.scopes = {Scope::train_step};
  s.n_layer = 1;
  s.n_embd = 64;
  s.n_head = 2;
  s.vocab = 32;
  s.train_batch = 2;
  s.reps = 0;
  const auto pts = run_sweep(s, [&](Scope sc, AttentionImpl im, int64_t N) { return measure(s, sc, im, N); }, {});
  REQUIRE(pts.size() == 4);
  for (const Point& p : pts) {
    INFO(table_row(p));
    REQUIRE(p.status == Status::ok);
    // Every parameter gets an fp32 gradient (the position embedding has N rows).
    nn::GPT model(train_step_config(s, p.impl, p.seq_len));
    REQUIRE(p.grad_bytes == size_t(model.num_parameters()) * 4);
    REQUIRE(p.base_bytes >= 3 * p.grad_bytes);  // the weights and AdamW's two moments
    REQUIRE(p.peak_bytes > p.grad_bytes);
    REQUIRE(p.saved_bytes > 0);
    REQUIRE(p.timed_reps == 0);
  }
  REQUIRE(pts[3].impl == AttentionImpl::naive);
  REQUIRE(pts[3].peak_bytes > pts[1].peak_bytes);  // naive > flash at N = 128
}

TEST_CASE("settings_for gives the device's defaults; check_settings refuses what cannot run", "[memprofile]") {
  const Settings cpu = settings_for(Device::cpu());
  REQUIRE(cpu.lengths == std::vector<int64_t>{64, 128, 256, 512, 1024});
  REQUIRE(cpu.heads == 4);
  REQUIRE(cpu.dtype == DType::f32);
  REQUIRE(cpu.n_embd == 128);
  REQUIRE(cpu.reps == 1);
  REQUIRE(cpu.device_description.rfind("cpu (", 0) == 0);
  REQUIRE(cpu.device_description.find(" RAM)") != std::string::npos);
  REQUIRE_NOTHROW(check_settings(cpu));

  REQUIRE(explicit_lengths({512, 64, 512, 128}) == std::vector<int64_t>{64, 128, 512});
  REQUIRE_THROWS_WITH(explicit_lengths({64, 0}), Catch::Contains("--lengths must be positive, got 0"));

  auto refused = [&](const std::function<void(Settings&)>& change, const std::string& why) {
    Settings s = cpu;
    change(s);
    REQUIRE_THROWS_WITH(check_settings(s), Catch::Contains(why));
  };
  refused([](Settings& s) { s.lengths.clear(); }, "no sequence lengths");
  refused([](Settings& s) { s.heads = 0; }, "must be positive");
  refused([](Settings& s) { s.dtype = DType::i32; }, "floating type, got i32");
  refused([](Settings& s) { s.dropout = 1.0; }, "--dropout must be in [0, 1)");
  refused([](Settings& s) { s.vocab = 1; }, "--vocab at least 2");
  refused([](Settings& s) {
    s.scopes = {Scope::train_step};
    s.n_embd = 100;
    s.n_head = 3;
  }, "n_head");
  Settings attention_only = cpu;  // the GPT settings matter only to the train-step scope
  attention_only.n_embd = 100;
  attention_only.n_head = 3;
  REQUIRE_NOTHROW(check_settings(attention_only));
}

TEST_CASE("warm_up runs the step and leaves nothing allocated", "[memprofile]") {
  Settings s = settings_for(Device::cpu());
  s.lengths = {256, 512};
  s.scopes = {Scope::attention, Scope::train_step};
  s.heads = 2;
  s.head_dim = 16;
  s.n_embd = 32;
  s.n_head = 2;
  s.vocab = 16;
  const size_t before = memory_stats(Device::cpu()).allocated;
  reset_peak_memory(Device::cpu());
  REQUIRE_NOTHROW(warm_up(s));
  const MemoryStats after = memory_stats(Device::cpu());
  REQUIRE(after.peak_allocated > before);  // a step ran
  REQUIRE(after.allocated == before);
}
