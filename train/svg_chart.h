// A small log-log line chart written as SVG by hand (no dependencies), and the least-squares
// fit of a growth exponent: the chart of `flashgrad memprofile` (train/memprofile.h).
//
//   chart::Chart c;
//   c.title = "Peak memory vs sequence length";
//   c.series.push_back({"flash", "#1f77b4", false, {{256, 4e6}, {512, 8e6}}, {}, {}, ""});
//   std::string svg = chart::render_log_log_svg(c);
//
// The x axis is ticked at powers of two (sequence lengths), the y axis at powers of two
// labelled in B/KiB/MiB/GiB. Points that ran out of memory are drawn as crosses on the top
// edge of the plot, labelled "OOM". A series may carry a fitted exponent: it is drawn as a
// shaded line over the range it was fitted on and written into the legend.
#pragma once
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace fg::chart {

// The slope b of the least-squares line log(y) = a + b log(x) (natural logs; the base does not
// change the slope) and its intercept a. NaN when fewer than two points or all x are equal.
// Points with x <= 0 or y <= 0 are rejected by the caller, not here: they have no logarithm.
struct LogLogFit {
  double slope = std::numeric_limits<double>::quiet_NaN();
  double intercept = std::numeric_limits<double>::quiet_NaN();
  double x_min = 0, x_max = 0;  // the x range the fit was made on
  size_t points = 0;
  bool ok() const { return std::isfinite(slope); }
  double at(double x) const { return std::exp(intercept + slope * std::log(x)); }
};

LogLogFit fit_log_log(const std::vector<std::pair<double, double>>& xy);

// The fit over the upper half of the points by x (at least two of them), where the leading
// term of the growth dominates the constant and lower-order ones.
LogLogFit fit_log_log_upper_half(std::vector<std::pair<double, double>> xy);

struct Series {
  std::string name;                             // legend text (the fit is appended)
  std::string color = "#1f77b4";
  bool dashed = false;                          // line style, e.g. one per scope
  std::vector<std::pair<double, double>> points;  // (x, y), y > 0, drawn in x order
  std::vector<double> oom_x;                    // x values that ran out of memory
  LogLogFit fit;                                // drawn and listed when ok()
  std::string fit_note;                         // extra legend text about the fit
};

struct Chart {
  std::string title, subtitle;                  // subtitle: lines separated by '\n'
  std::string x_label = "sequence length N", y_label = "bytes";
  std::vector<Series> series;
  int width = 960, height = 600;
};

// The whole SVG document.
std::string render_log_log_svg(const Chart& c);

// "&", "<", ">" and quotes escaped for SVG text and attributes.
std::string xml_escape(const std::string& s);
// 2^p bytes as "512 B", "4 KiB", "1 GiB" (exact: p >= 0 gives whole numbers of a unit).
std::string pow2_bytes_label(int p);
// 2^p as a length: "256", "4096", "16K", "128K", "1M".
std::string pow2_count_label(int p);

}  // namespace fg::chart
