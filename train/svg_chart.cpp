// The log-log SVG chart and the growth-exponent fit (train/svg_chart.h).
#include "train/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace fg::chart {

LogLogFit fit_log_log(const std::vector<std::pair<double, double>>& xy) {
  LogLogFit f;
  f.points = xy.size();
  if (xy.size() < 2) return f;
  double sx = 0, sy = 0;
  f.x_min = xy[0].first;
  f.x_max = xy[0].first;
  for (const auto& [x, y] : xy) {
    sx += std::log(x);
    sy += std::log(y);
    f.x_min = std::min(f.x_min, x);
    f.x_max = std::max(f.x_max, x);
  }
  const double n = double(xy.size()), mx = sx / n, my = sy / n;
  double sxx = 0, sxy = 0;
  for (const auto& [x, y] : xy) {
    const double dx = std::log(x) - mx;
    sxx += dx * dx;
    sxy += dx * (std::log(y) - my);
  }
  if (sxx <= 0) return f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  return f;
}

LogLogFit fit_log_log_upper_half(std::vector<std::pair<double, double>> xy) {
  std::sort(xy.begin(), xy.end());
  const size_t keep = std::max<size_t>(2, (xy.size() + 1) / 2);
  if (xy.size() > keep) xy.erase(xy.begin(), xy.end() - keep);
  return fit_log_log(xy);
}

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string pow2_bytes_label(int p) {
  if (p < 0) return "2^" + std::to_string(p) + " B";
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  const int u = std::min(p / 10, 6);
  const long long v = 1LL << (p - 10 * u);
  return std::to_string(v) + " " + units[u];
}

std::string pow2_count_label(int p) {
  if (p < 0) return "2^" + std::to_string(p);
  if (p < 14) return std::to_string(1LL << p);
  if (p < 20) return std::to_string(1LL << (p - 10)) + "K";
  return std::to_string(1LL << (p - 20)) + "M";
}

namespace {
// A coordinate with one decimal.
std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}
}  // namespace

std::string render_log_log_svg(const Chart& c) {
  // Data range in log2, over points, OOM positions and the fitted lines' ends.
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  bool any_oom = false;
  for (const Series& s : c.series) {
    for (const auto& [x, y] : s.points) {
      if (!(x > 0 && y > 0)) continue;
      xlo = std::min(xlo, std::log2(x));
      xhi = std::max(xhi, std::log2(x));
      ylo = std::min(ylo, std::log2(y));
      yhi = std::max(yhi, std::log2(y));
    }
    for (double x : s.oom_x) {
      if (!(x > 0)) continue;
      xlo = std::min(xlo, std::log2(x));
      xhi = std::max(xhi, std::log2(x));
      any_oom = true;
    }
  }
  if (!std::isfinite(xlo)) xlo = 6, xhi = 10;  // nothing to draw: an empty frame
  if (!std::isfinite(ylo)) ylo = 10, yhi = 20;
  // Whole powers of two around the data, with a margin so that markers stay inside.
  double x0 = std::floor(xlo) - 0.3, x1 = std::ceil(xhi) + 0.3;
  if (x1 - x0 < 1.6) x0 -= 0.5, x1 += 0.5;
  double y0 = std::floor(ylo - 0.3), y1 = std::ceil(yhi + 0.3);
  if (y1 - y0 < 2) y0 -= 1, y1 += 1;

  const int W = c.width, H = c.height;
  // Subtitle lines ('\n'-separated) push the plot down.
  std::vector<std::string> sub;
  for (size_t a = 0; !c.subtitle.empty() && a <= c.subtitle.size();) {
    size_t b = c.subtitle.find('\n', a);
    if (b == std::string::npos) b = c.subtitle.size();
    sub.push_back(c.subtitle.substr(a, b - a));
    a = b + 1;
  }
  const double left = 90, right = 330, top = 48 + 17.0 * double(sub.size()) + 12, bottom = 70;
  const double pw = W - left - right, ph = H - top - bottom;
  auto X = [&](double x) { return left + (std::log2(x) - x0) / (x1 - x0) * pw; };
  // Out-of-memory points get rows of their own at the top, above the data: one row per series
  // that has any, so that crosses of different series at the same N do not hide each other.
  int oom_rows = 0;
  for (const Series& s : c.series) oom_rows += s.oom_x.empty() ? 0 : 1;
  const double oom_pad = any_oom ? 18 + 11.0 * oom_rows : 0;
  auto Y = [&](double y) {
    return top + oom_pad + (y1 - std::log2(y)) / (y1 - y0) * (ph - oom_pad);
  };

  std::string o;
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(W) +
       "\" height=\"" + std::to_string(H) + "\" viewBox=\"0 0 " + std::to_string(W) + " " +
       std::to_string(H) + "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">\n";
  o += "<rect x=\"0\" y=\"0\" width=\"" + std::to_string(W) + "\" height=\"" +
       std::to_string(H) + "\" fill=\"white\"/>\n";
  o += "<text x=\"" + num(left) + "\" y=\"28\" font-size=\"17\" font-weight=\"bold\">" +
       xml_escape(c.title) + "</text>\n";
  for (size_t i = 0; i < sub.size(); ++i)
    o += "<text x=\"" + num(left) + "\" y=\"" + num(50 + 17.0 * double(i)) +
         "\" fill=\"#444\">" + xml_escape(sub[i]) + "</text>\n";

  // Grid and ticks. x: every power of two (every other one when crowded).
  o += "<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  const int px0 = int(std::ceil(x0)), px1 = int(std::floor(x1));
  const int xstep = (px1 - px0 + 1) * 44 > pw ? 2 : 1;
  for (int p = px0; p <= px1; p += xstep)
    o += "<line x1=\"" + num(X(std::ldexp(1.0, p))) + "\" y1=\"" + num(top) + "\" x2=\"" +
         num(X(std::ldexp(1.0, p))) + "\" y2=\"" + num(top + ph) + "\"/>\n";
  // y: powers of two, thinned so that at most ~12 labels show.
  const int py0 = int(std::ceil(y0)), py1 = int(std::floor(y1));
  int ystep = 1;
  while ((py1 - py0) / ystep > 12) ystep++;
  for (int p = py0; p <= py1; ++p)
    if (p % ystep == 0)
      o += "<line x1=\"" + num(left) + "\" y1=\"" + num(Y(std::ldexp(1.0, p))) + "\" x2=\"" +
           num(left + pw) + "\" y2=\"" + num(Y(std::ldexp(1.0, p))) + "\"/>\n";
  o += "</g>\n";
  o += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) +
       "\" height=\"" + num(ph) + "\" fill=\"none\" stroke=\"#333\"/>\n";
  o += "<g fill=\"#333\">\n";
  for (int p = px0; p <= px1; p += xstep)
    o += "<text x=\"" + num(X(std::ldexp(1.0, p))) + "\" y=\"" + num(top + ph + 20) +
         "\" text-anchor=\"middle\">" + pow2_count_label(p) + "</text>\n";
  for (int p = py0; p <= py1; ++p)
    if (p % ystep == 0)
      o += "<text x=\"" + num(left - 8) + "\" y=\"" + num(Y(std::ldexp(1.0, p)) + 4) +
           "\" text-anchor=\"end\">" + pow2_bytes_label(p) + "</text>\n";
  o += "<text x=\"" + num(left + pw / 2) + "\" y=\"" + num(H - 22) +
       "\" text-anchor=\"middle\">" + xml_escape(c.x_label) + " (log scale)</text>\n";
  o += "<text transform=\"translate(22," + num(top + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + xml_escape(c.y_label) +
       " (log scale)</text>\n";
  o += "</g>\n";

  // Series: fitted line (dotted), polyline, markers, OOM crosses.
  if (any_oom) {
    o += "<text x=\"" + num(left + 6) + "\" y=\"" + num(top + 14) +
         "\" fill=\"#a00\" font-size=\"11\">out of memory \u00d7</text>\n";
    o += "<line x1=\"" + num(left) + "\" y1=\"" + num(top + oom_pad - 4) + "\" x2=\"" +
         num(left + pw) + "\" y2=\"" + num(top + oom_pad - 4) +
         "\" stroke=\"#d8b0b0\" stroke-dasharray=\"3 3\"/>\n";
  }
  int oom_row = 0;
  for (const Series& s : c.series) {
    std::vector<std::pair<double, double>> pts;
    for (const auto& p : s.points)
      if (p.first > 0 && p.second > 0) pts.push_back(p);
    std::sort(pts.begin(), pts.end());
    const std::string dash = s.dashed ? " stroke-dasharray=\"8 5\"" : "";
    if (s.fit.ok() && s.fit.x_max > s.fit.x_min) {
      const double fx0 = s.fit.x_min, fx1 = s.fit.x_max;
      o += "<line x1=\"" + num(X(fx0)) + "\" y1=\"" + num(Y(s.fit.at(fx0))) + "\" x2=\"" +
           num(X(fx1)) + "\" y2=\"" + num(Y(s.fit.at(fx1))) + "\" stroke=\"" + s.color +
           "\" stroke-width=\"6\" stroke-opacity=\"0.18\" stroke-linecap=\"round\"/>\n";
    }
    if (pts.size() >= 2) {
      o += "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"2\"" + dash +
           " points=\"";
      for (const auto& [x, y] : pts) o += num(X(x)) + "," + num(Y(y)) + " ";
      o += "\"/>\n";
    }
    for (const auto& [x, y] : pts) {
      if (s.dashed)
        o += "<rect x=\"" + num(X(x) - 4) + "\" y=\"" + num(Y(y) - 4) +
             "\" width=\"8\" height=\"8\" fill=\"white\" stroke=\"" + s.color +
             "\" stroke-width=\"2\"/>\n";
      else
        o += "<circle cx=\"" + num(X(x)) + "\" cy=\"" + num(Y(y)) + "\" r=\"4\" fill=\"" +
             s.color + "\"/>\n";
    }
    const double oom_y = top + 10 + 11.0 * oom_row;
    if (!s.oom_x.empty()) oom_row++;
    for (double x : s.oom_x) {
      if (!(x > 0)) continue;
      const double cx = X(x);
      o += "<path d=\"M" + num(cx - 4) + "," + num(oom_y - 4) + " L" + num(cx + 4) + "," +
           num(oom_y + 4) + " M" + num(cx - 4) + "," + num(oom_y + 4) + " L" + num(cx + 4) +
           "," + num(oom_y - 4) + "\" stroke=\"" + s.color + "\" stroke-width=\"2.5\"/>\n";
    }
  }

  // Legend on the right: one entry per series with its fitted exponent.
  double ly = top + 8;
  const double lx = left + pw + 18;
  o += "<g font-size=\"12\">\n";
  for (const Series& s : c.series) {
    const std::string dash = s.dashed ? " stroke-dasharray=\"8 5\"" : "";
    o += "<line x1=\"" + num(lx) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(lx + 28) +
         "\" y2=\"" + num(ly) + "\" stroke=\"" + s.color + "\" stroke-width=\"2\"" + dash +
         "/>\n";
    o += "<text x=\"" + num(lx + 36) + "\" y=\"" + num(ly + 4) + "\" font-weight=\"bold\">" +
         xml_escape(s.name) + "</text>\n";
    ly += 17;
    std::string fit_text = "growth exponent: ";
    if (s.fit.ok()) {
      char b[32];
      std::snprintf(b, sizeof b, "%.2f", s.fit.slope);
      fit_text += b;
    } else {
      fit_text += "n/a (fewer than 2 points)";
    }
    o += "<text x=\"" + num(lx + 36) + "\" y=\"" + num(ly + 4) + "\">" + xml_escape(fit_text) +
         "</text>\n";
    ly += 15;
    if (!s.fit_note.empty()) {
      o += "<text x=\"" + num(lx + 36) + "\" y=\"" + num(ly + 4) + "\" fill=\"#555\">" +
           xml_escape(s.fit_note) + "</text>\n";
      ly += 15;
    }
    if (!s.oom_x.empty()) {
      double first = *std::min_element(s.oom_x.begin(), s.oom_x.end());
      o += "<text x=\"" + num(lx + 36) + "\" y=\"" + num(ly + 4) + "\" fill=\"#a00\">OOM from N = " +
           std::to_string((long long)first) + "</text>\n";
      ly += 15;
    }
    ly += 10;
  }
  o += "<text x=\"" + num(lx) + "\" y=\"" + num(ly + 6) +
       "\" fill=\"#555\">shaded: least-squares fit on log-log</text>\n";
  o += "</g>\n</svg>\n";
  return o;
}

}  // namespace fg::chart
