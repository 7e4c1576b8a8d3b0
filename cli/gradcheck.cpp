// `flashgrad gradcheck attention`: prints the attention check of autograd/attention_check.h,
// one line per grid row (flash's errors per tensor, the bound, PASS or FAIL), then the fp64
// finite differences per tile, then a summary line; exits 1 when anything failed.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/attention_check.h"
#include "cli/commands.h"

namespace fg::cli {

namespace {

int gradcheck_attention(const std::string& device_name, bool quick) {
  const Device dev = device_from_string(device_name);
  const std::vector<AttentionCheckRow> rows = attention_check_grid(quick, dev.is_cuda());
  std::printf("flashgrad gradcheck attention on %s: the flash node, %zu rows\n",
              dev.str().c_str(), rows.size());
  std::printf("errors of O, dQ, dK, dV: rel_l2 = ||x - ref|| / ||ref|| and max_rel = max |x - "
              "ref| / max |ref|. Reference: f64, f32 the naive node in that dtype; bf16, f16 "
              "the fp64 reference, beside which the naive node in that dtype is measured "
              "(naive); varlen rows (packed sequences, Nq and Nk their totals) the fp64 "
              "reference on each sequence alone. A row passes when its worst rel_l2 <= bound: f64 %.1e, f32 %.1e, bf16 "
              "%.1e, f16 %.1e\n",
              attention_check_bound(DType::f64, dev), attention_check_bound(DType::f32, dev),
              attention_check_bound(DType::bf16, dev), attention_check_bound(DType::f16, dev));
  std::printf("%-5s %4s %5s %5s %6s %5s %5s %-8s | %-19s %-19s %-19s %-19s | %-8s %-8s | %s\n",
              "dtype", "D", "Nq", "Nk", "Hq/kv", "caus", "drop", "mask", "O l2/maxrel",
              "dQ l2/maxrel", "dK l2/maxrel", "dV l2/maxrel", "naive", "bound", "result");
  int failures = 0;
  Generator gen(2024);
  for (const AttentionCheckRow& r : rows) {
    const AttentionCheckResult res = attention_check_row(r, dev, gen);
    failures += res.ok ? 0 : 1;
    char hq[16];
    std::snprintf(hq, sizeof hq, "%lld/%lld", (long long)r.Hq, (long long)r.Hkv);
    std::printf("%-5s %4lld %5lld %5lld %6s %5s %5.2f %-8s |", dtype_name(r.dtype),
                (long long)r.D, (long long)r.Nq, (long long)r.Nk, hq, r.causal ? "yes" : "no",
                r.dropout, r.varlen ? (r.varlen == 1 ? "varlen1" : "varlen2")
                                    : attention_check_mask_name(r.mask));
    for (const AttentionCheckError& e : res.flash)
      std::printf(" %8.1e/%8.1e ", e.rel_l2, e.max_rel);
    const bool low = r.dtype == DType::bf16 || r.dtype == DType::f16;
    double naive = 0;
    for (const AttentionCheckError& e : res.naive) naive = std::max(naive, e.rel_l2);
    if (low && !r.varlen) std::printf("| %8.1e ", naive);
    else std::printf("| %8s ", "-");
    std::printf("%8.1e | %s\n", res.bound, res.ok ? "PASS" : "FAIL");
    std::fflush(stdout);
  }
  std::printf("\nfp64 finite differences of sum(O * R) along a random direction per input and "
              "64-row tile (causal, dropout 0.2, MQA):\n");
  int fd_checks = 0;
  for (int64_t D : {32, 64}) {
    const FiniteDifferenceResult fd = attention_finite_difference_check(dev, D);
    for (const FiniteDifferenceCheck& c : fd.checks) {
      std::printf("  D %lld Nq %lld Nk %lld: d%c rows %3lld-%3lld: numeric %+.10e analytic "
                  "%+.10e relative error %.2e\n",
                  (long long)D, (long long)fd.Nq, (long long)fd.Nk, c.input, (long long)c.row0,
                  (long long)c.row1 - 1, c.numeric, c.analytic, c.rel_error);
    }
    std::printf("  D %lld: worst relative error %.2e (bound %.1e) %s\n", (long long)D, fd.worst,
                fd.bound, fd.ok ? "PASS" : "FAIL");
    failures += fd.ok ? 0 : 1;
    ++fd_checks;
  }
  std::printf("\n%zu checks, %d failed: %s\n", rows.size() + size_t(fd_checks), failures,
              failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}

}  // namespace

void register_gradcheck(CLI::App& app) {
  auto* gc = app.add_subcommand("gradcheck", "check gradients of the fused kernels");
  gc->require_subcommand(1);
  auto* att = gc->add_subcommand("attention", "flash vs naive attention over a feature grid");
  static std::string device = "cpu";
  static bool quick = false;
  att->add_option("--device", device, "cpu, cuda or auto")->capture_default_str();
  att->add_flag("--quick", quick, "a smaller grid (head dim 64 only for the variations)");
  att->callback([] {
    int rc = gradcheck_attention(device, quick);
    if (rc) throw Exit{rc};
  });
}

}  // namespace fg::cli
