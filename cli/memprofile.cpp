// `flashgrad memprofile`: memory of naive and flash attention against the sequence length, as
// a table on screen, a CSV and a log-log SVG chart with the fitted growth exponents.
//
//   flashgrad memprofile --device cuda                        # 256 .. 65536, attention scope
//   flashgrad memprofile --device cuda --scope both --max-len 131072 --out results/
//   flashgrad memprofile --device cpu                         # 64 .. 1024, a few seconds
//
// The CSV and the SVG go to out/memprofile/ unless --out says otherwise.
//
// The measuring, the table, the CSV and the chart are the library's (train/memprofile.h, which
// also says what each number counts, and train/svg_chart.h); this file turns flags into
// Settings, prints, and writes the files. In short, "peak" is the allocator's peak during one
// step minus what was allocated before it, gradients included. The CSV and the SVG are
// rewritten after every point, so a long sweep that is interrupted keeps what it measured.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "train/memprofile.h"

namespace fg::cli {

namespace {

struct MemprofileFlags {
  std::string device = "auto", scope = "attention", impl = "both", dtype = "auto";
  int64_t min_len = 0, max_len = 0;  // 0: the device's default
  std::vector<int64_t> lengths;      // overrides min/max when given
  int64_t batch = 1, heads = 0, head_dim = 64;  // heads 0: the device's default
  bool causal = true, deterministic = false;
  double dropout = 0.0;
  int64_t layers = 2, width = 0, gpt_heads = 4, train_batch = 1, vocab = 256;  // width 0: default
  int reps = -1;  // -1: the device's default
  bool no_warmup = false;
  std::string out = "out/memprofile", csv = "memprofile.csv", svg = "memprofile.svg";
};

// A relative file name goes into --out.
std::filesystem::path output_path(const std::string& dir, const std::string& file) {
  std::filesystem::path p(file);
  return p.is_absolute() ? p : std::filesystem::path(dir) / p;
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  FG_CHECK(f.good(), "memprofile: cannot write '", p.string(), "'; check --out, --csv, --svg");
  f << text;
  FG_CHECK(f.good(), "memprofile: writing '", p.string(), "' failed (disk full?)");
}

// Refuses sizes whose tensors could not even be counted in 64 bits (long before any machine
// runs out of memory, which the sweep records as OOM): the inputs B x N x H x D, the naive
// scores B x H x N x N, and in the train-step scope the GPT's activations and scores.
void check_sizes(const memprofile::Settings& s) {
  using memprofile::Scope;
  const double n = double(s.lengths.back()), limit = std::ldexp(1.0, 62);
  const bool naive = std::find(s.impls.begin(), s.impls.end(), AttentionImpl::naive) != s.impls.end();
  auto refuse_over = [&](double elements, const char* what, const char* lower) {
    FG_CHECK(elements <= limit, "memprofile: at N = ", s.lengths.back(), " ", what, " would hold ",
             elements, " elements, beyond 2^62 (no machine holds them); lower ", lower);
  };
  for (Scope scope : s.scopes) {
    if (scope == Scope::attention) {
      refuse_over(double(s.batch) * n * double(s.heads) * double(s.head_dim), "q, k and v",
                  "--max-len (or --lengths), --batch, --heads or --head-dim");
      if (naive)
        refuse_over(double(s.batch) * double(s.heads) * n * n, "the naive scores",
                    "--max-len (or --lengths), --batch or --heads");
    } else {
      refuse_over(double(s.train_batch) * n * double(std::max(4 * s.n_embd, s.vocab)),
                  "the GPT's activations", "--max-len (or --lengths), --train-batch, --width or --vocab");
      if (naive)
        refuse_over(double(s.train_batch) * double(s.n_head) * n * n, "the naive scores",
                    "--max-len (or --lengths), --train-batch or --gpt-heads");
    }
  }
}

// The device's defaults (memprofile::settings_for) with the flags that were given on top.
memprofile::Settings settings_from_flags(const MemprofileFlags& f) {
  using namespace memprofile;
  Settings s = settings_for(device_from_string(f.device));
  if (!f.lengths.empty())
    s.lengths = explicit_lengths(f.lengths);
  else
    s.lengths = doubling_lengths(f.min_len > 0 ? f.min_len : s.lengths.front(),
                                 f.max_len > 0 ? f.max_len : s.lengths.back());
  s.scopes.clear();
  if (f.scope == "attention" || f.scope == "both") s.scopes.push_back(Scope::attention);
  if (f.scope == "train-step" || f.scope == "both") s.scopes.push_back(Scope::train_step);
  s.impls.clear();
  if (f.impl == "naive" || f.impl == "both") s.impls.push_back(AttentionImpl::naive);
  if (f.impl == "flash" || f.impl == "both") s.impls.push_back(AttentionImpl::flash);
  s.batch = f.batch;
  if (f.heads > 0) s.heads = f.heads;
  s.head_dim = f.head_dim;
  if (f.dtype != "auto") s.dtype = dtype_from_string(f.dtype);
  s.causal = f.causal;
  s.dropout = f.dropout;
  s.deterministic = f.deterministic;
  s.n_layer = f.layers;
  if (f.width > 0) s.n_embd = f.width;
  s.n_head = f.gpt_heads;
  s.train_batch = f.train_batch;
  s.vocab = f.vocab;
  if (f.reps >= 0) s.reps = f.reps;
  check_settings(s);
  check_sizes(s);
  return s;
}

int run_memprofile(const MemprofileFlags& f) {
  using namespace memprofile;
  const Settings s = settings_from_flags(f);
  std::error_code ec;
  std::filesystem::create_directories(f.out, ec);
  FG_CHECK(!ec, "memprofile: cannot create the --out directory '", f.out, "': ", ec.message());
  const auto csv_path = output_path(f.out, f.csv), svg_path = output_path(f.out, f.svg);

  std::printf("flashgrad memprofile on %s\n", s.device_description.c_str());
  for (Scope sc : s.scopes) std::printf("  %s\n", config_line(s, sc).c_str());
  std::printf("  lengths:");
  for (int64_t n : s.lengths) std::printf(" %lld", (long long)n);
  std::printf("\n");
  for (const std::string& l : legend_lines(s)) std::printf("  %s\n", l.c_str());
  std::printf("  writing %s and %s after every point\n\n", csv_path.string().c_str(),
              svg_path.string().c_str());

  if (!f.no_warmup) warm_up(s);

  std::printf("%s\n", table_header().c_str());
  std::fflush(stdout);
  std::vector<Point> done;
  auto write_outputs = [&] {
    std::ostringstream csv;
    write_csv(csv, s, done);
    write_text(csv_path, csv.str());
    write_text(svg_path, chart::render_log_log_svg(make_chart(s, done)));
  };
  const std::vector<Point> points =
      run_sweep(s, [&](Scope sc, AttentionImpl im, int64_t n) { return measure(s, sc, im, n); },
                [&](const Point& p, size_t i, size_t total) {
                  std::printf("%s   [%zu/%zu]\n", table_row(p).c_str(), i, total);
                  std::fflush(stdout);
                  done.push_back(p);
                  write_outputs();
                });
  std::printf("%s", summary(s, points).c_str());
  std::printf("\nwrote %s and %s\n", csv_path.string().c_str(), svg_path.string().c_str());

  int errors = 0, ooms = 0;
  for (const Point& p : points) {
    errors += p.status == Status::error;
    ooms += p.status == Status::oom;
  }
  if (ooms) std::printf("%d point(s) ran out of memory (marked OOM)\n", ooms);
  if (errors) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %d point(s) failed for a reason other than memory:\n", errors);
    for (const Point& p : points)
      if (p.status == Status::error)
        std::fprintf(stderr, "  %s %s N=%lld: %s\n", scope_name(p.scope), attention_impl_name(p.impl),
                     (long long)p.seq_len, p.message.c_str());
    return 2;
  }
  return 0;
}

}  // namespace

void register_memprofile(CLI::App& app) {
  auto flags = std::make_shared<MemprofileFlags>();
  MemprofileFlags& f = *flags;
  CLI::App* cmd = app.add_subcommand(
      "memprofile", "memory of naive vs flash attention against sequence length (table, CSV, SVG)");
  cmd->footer(
      "Sweeps N = min-len, 2 min-len, ... max-len (CUDA 256..65536, CPU 64..1024 by default). "
      "Defaults on CUDA: B=1 H=16 D=64 bf16 causal, GPT width 256; on CPU: H=4, f32, width 128. "
      "peak = allocator peak during one step minus bytes allocated before it (gradients "
      "counted). A point that runs out of memory is recorded as OOM and the sweep goes on; the "
      "exit code is 2 when a point failed for another reason.");
  using Range = train::NumberRange;
  constexpr int64_t kMaxLen = int64_t(1) << 30, kMaxSize = int64_t(1) << 20;
  cmd->add_option("--device", f.device, "cpu, cuda or auto")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "cuda:0"}))->capture_default_str();
  cmd->add_option("--scope", f.scope, "attention (one forward + backward of the node), "
                  "train-step (one GPT training step) or both")
      ->check(CLI::IsMember({"attention", "train-step", "both"}))
      ->capture_default_str();
  cmd->add_option("--impl", f.impl, "naive, flash or both")
      ->check(CLI::IsMember({"naive", "flash", "both"}))
      ->capture_default_str();
  cmd->add_option("--min-len", f.min_len, "shortest sequence length (default 256 CUDA, 64 CPU)")
      ->transform(in_range(Range::whole("--min-len", 1, kMaxLen)));
  cmd->add_option("--max-len", f.max_len, "longest sequence length (default 65536 CUDA, 1024 CPU)")
      ->transform(in_range(Range::whole("--max-len", 1, kMaxLen)));
  cmd->add_option("--lengths", f.lengths, "explicit lengths instead of the doubling sweep")
      ->delimiter(',')
      ->transform(in_range(Range::whole("--lengths", 1, kMaxLen)));
  cmd->add_option("--batch", f.batch, "attention batch size B")
      ->transform(in_range(Range::whole("--batch", 1, kMaxSize)))->capture_default_str();
  cmd->add_option("--heads", f.heads, "attention heads H (default 16 CUDA, 4 CPU)")
      ->transform(in_range(Range::whole("--heads", 1, 65536)));
  cmd->add_option("--head-dim", f.head_dim, "attention head dim D")
      ->transform(in_range(Range::whole("--head-dim", 1, 65536)))->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "f32 (or fp32), bf16, f16 (or fp16), f64 (or fp64), or "
                  "auto (bf16 CUDA, f32 CPU)")
      ->check(CLI::IsMember({"auto", "f32", "fp32", "bf16", "f16", "fp16", "f64", "fp64"}))
      ->capture_default_str();
  cmd->add_flag("--causal,!--no-causal", f.causal, "causal mask (default on)");
  cmd->add_option("--dropout", f.dropout, "attention dropout probability")
      ->transform(in_range(Range::real("--dropout", 0, 1, false, true)))->capture_default_str();
  cmd->add_flag("--deterministic", f.deterministic, "attention scope: the deterministic CUDA "
                "flash backward (no fp32 dQ accumulator: B*N*H*D*4 bytes less)");
  cmd->add_option("--layers", f.layers, "train-step: GPT layers")
      ->transform(in_range(Range::whole("--layers", 1, 1024)))->capture_default_str();
  cmd->add_option("--width", f.width, "train-step: GPT width n_embd (default 256 CUDA, 128 CPU)")
      ->transform(in_range(Range::whole("--width", 1, kMaxSize)));
  cmd->add_option("--gpt-heads", f.gpt_heads, "train-step: GPT heads")
      ->transform(in_range(Range::whole("--gpt-heads", 1, 65536)))->capture_default_str();
  cmd->add_option("--train-batch", f.train_batch, "train-step: batch size")
      ->transform(in_range(Range::whole("--train-batch", 1, kMaxSize)))->capture_default_str();
  cmd->add_option("--vocab", f.vocab, "train-step: vocabulary size")
      ->transform(in_range(Range::whole("--vocab", 2, 1 << 24)))->capture_default_str();
  cmd->add_option("--reps", f.reps, "timed runs per point, median reported (default 3 CUDA, 1 "
                  "CPU; 0 times the memory run)")
      ->transform(in_range(Range::whole("--reps", 0, 1000)));
  cmd->add_flag("--no-warmup", f.no_warmup, "skip the warm-up run at a small length");
  cmd->add_option("--out", f.out, "directory for the CSV and the SVG")
      ->check(non_empty("--out", "a directory"))->capture_default_str();
  cmd->add_option("--csv", f.csv, "CSV file (relative: inside --out)")
      ->check(non_empty("--csv", "a file"))->capture_default_str();
  cmd->add_option("--svg", f.svg, "SVG chart (relative: inside --out)")
      ->check(non_empty("--svg", "a file"))->capture_default_str();
  cmd->callback([flags] {
    const int rc = run_memprofile(*flags);
    if (rc) throw Exit{rc};
  });
}

}  // namespace fg::cli
