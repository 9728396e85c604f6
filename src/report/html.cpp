#include "report/html.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/files.h"

namespace seqgan::report {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

std::string num(double v) {
  std::ostringstream os;
  const double a = std::abs(v);
  if (a == 0) return "0";
  if ((a >= 1e5 || a < 1e-3)) os << std::setprecision(2) << std::scientific << v;
  else os << std::setprecision(a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3) << std::fixed << v;
  return os.str();
}

// About `n` round tick values covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int n = 5) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

// The labels of one axis share the precision of the step between its ticks: "2.0 2.5 3.0", "0 2 4".
std::string tick_label(double t, const std::vector<double>& all) {
  const double step = all.size() > 1 ? all[1] - all[0] : 0;
  if (!(step > 0) || std::abs(t) >= 1e5 || step < 1e-3) return num(t);
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  std::ostringstream os;
  os << std::fixed << std::setprecision(decimals) << t;
  return os.str();
}

struct Frame {
  int width, height;
  double left = 58, right = 22, top = 28, bottom = 40;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // the data range, set by each chart
  double px(double x) const { return left + (x - x0) / (x1 - x0 == 0 ? 1 : x1 - x0) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y0) / (y1 - y0 == 0 ? 1 : y1 - y0) * (height - top - bottom); }
};

std::string axes(const Frame& f, const std::string& title, const std::string& x_label, const std::string& y_label,
                 bool log_y, bool x_ticks = true) {
  std::ostringstream os;
  os << "<text x='" << f.width / 2 << "' y='16' text-anchor='middle' font-weight='bold'>" << escape(title) << "</text>";
  os << "<line x1='" << f.left << "' y1='" << f.height - f.bottom << "' x2='" << f.width - f.right << "' y2='"
     << f.height - f.bottom << "' stroke='#333'/>";
  os << "<line x1='" << f.left << "' y1='" << f.top << "' x2='" << f.left << "' y2='" << f.height - f.bottom
     << "' stroke='#333'/>";
  const auto y_ticks = ticks(f.y0, f.y1);
  for (double t : y_ticks) {
    const double y = f.py(t);
    os << "<line x1='" << f.left - 4 << "' y1='" << y << "' x2='" << f.width - f.right << "' y2='" << y
       << "' stroke='#ddd'/>";
    os << "<text x='" << f.left - 6 << "' y='" << y + 4 << "' text-anchor='end'>"
       << (log_y ? num(std::pow(10.0, t)) : tick_label(t, y_ticks)) << "</text>";
  }
  const auto x_values = x_ticks ? ticks(f.x0, f.x1) : std::vector<double>{};
  for (double t : x_values) {
    const double x = f.px(t);
    os << "<line x1='" << x << "' y1='" << f.height - f.bottom << "' x2='" << x << "' y2='" << f.height - f.bottom + 4
       << "' stroke='#333'/><text x='" << x << "' y='" << f.height - f.bottom + 16 << "' text-anchor='middle'>"
       << tick_label(t, x_values) << "</text>";
  }
  os << "<text x='" << (f.left + f.width - f.right) / 2 << "' y='" << f.height - 6 << "' text-anchor='middle'>"
     << escape(x_label) << "</text>";
  os << "<text x='14' y='" << (f.top + f.height - f.bottom) / 2 << "' text-anchor='middle' transform='rotate(-90 14 "
     << (f.top + f.height - f.bottom) / 2 << ")'>" << escape(y_label) << (log_y ? " (log)" : "") << "</text>";
  return os.str();
}

std::string svg_open(int width, int height, const std::string& title) {
  std::ostringstream os;
  os << "<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='" << width << "' height='" << height
     << "' viewBox='0 0 " << width << " " << height << "' font-family='sans-serif' font-size='11' role='img' aria-label='"
     << escape(title) << "'>";
  return os.str();
}

// A chart's frame with a note in place of the data.
std::string no_data(const std::string& title, int width, int height) {
  std::ostringstream os;
  os << svg_open(width, height, title) << "<text x='" << width / 2 << "' y='" << height / 2
     << "' text-anchor='middle'>" << escape(title) << ": no data</text></svg>";
  return os.str();
}

}  // namespace

std::string fixed(double value, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << value;
  return os.str();
}

std::string duration(double seconds) {
  const int s = static_cast<int>(std::lround(seconds));
  std::ostringstream os;
  if (s >= 60) os << s / 60 << " min " << std::setw(2) << std::setfill('0') << s % 60 << " s";
  else os << s << " s";
  return os.str();
}

const char* page_style() {
  return R"(
body{font-family:sans-serif;max-width:1280px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:.88em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td:first-child{white-space:nowrap}th{background:#f3f3f3}
.charts{display:flex;flex-wrap:wrap;gap:12px}.fig{margin:8px 0}.fig img{image-rendering:pixelated;border:1px solid #ddd}
.figs{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555;font-size:.92em}.missing{color:#b00;font-weight:bold}
code{background:#f4f4f4;padding:1px 3px}.wide{overflow-x:auto}
)";
}

std::string images_loaded_script() {
  return "<script>window.addEventListener('load',function(){var i=document.images,n=0;for(var k=0;k<i.length;k++)"
         "if(i[k].complete&&i[k].naturalWidth>0)n++;document.body.setAttribute('data-images',i.length);"
         "document.body.setAttribute('data-images-loaded',n);});</script>";
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nlohmann::json::object();
  }
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string base64(const std::string& bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

std::string embed_png(const std::string& path, const std::string& alt, double scale) {
  if (!std::filesystem::is_regular_file(path)) return "<p class='missing'>missing: " + escape(path) + "</p>";
  const std::string data = read_file_text(path);
  std::ostringstream os;
  os << "<img alt='" << escape(alt) << "' src='data:image/png;base64," << base64(data) << "'";
  // The size from the PNG header (IHDR: width and height, big-endian, at bytes 16 and 20).
  if (scale > 0 && data.size() >= 24 && data.compare(1, 3, "PNG") == 0) {
    const auto be32 = [&](size_t at) {
      return (uint32_t(uint8_t(data[at])) << 24) | (uint32_t(uint8_t(data[at + 1])) << 16) |
             (uint32_t(uint8_t(data[at + 2])) << 8) | uint32_t(uint8_t(data[at + 3]));
    };
    os << " width='" << std::lround(be32(16) * scale) << "' height='" << std::lround(be32(20) * scale) << "'";
  }
  os << ">";
  return os.str();
}

std::string line_chart(const std::string& title, const std::vector<Series>& series, const std::string& x_label,
                       const std::string& y_label, bool log_y, int width, int height) {
  std::vector<Series> data;
  for (const auto& s : series) {
    Series t{s.name, {}};
    for (const auto& [x, y] : s.points)
      if (std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0)) t.points.emplace_back(x, log_y ? std::log10(y) : y);
    if (!t.points.empty()) data.push_back(std::move(t));
  }
  if (data.empty()) return no_data(title, width, height);
  std::ostringstream os;
  os << svg_open(width, height, title);
  Frame f{width, height};
  f.x0 = f.y0 = INFINITY;
  f.x1 = f.y1 = -INFINITY;
  for (const auto& s : data)
    for (const auto& [x, y] : s.points) {
      f.x0 = std::min(f.x0, x), f.x1 = std::max(f.x1, x);
      f.y0 = std::min(f.y0, y), f.y1 = std::max(f.y1, y);
    }
  const double pad = (f.y1 - f.y0) * 0.05 + (f.y1 == f.y0 ? 1 : 0);
  f.y0 -= pad, f.y1 += pad;
  os << axes(f, title, x_label, y_label, log_y);
  for (size_t i = 0; i < data.size(); ++i) {
    const char* color = kColors[i % 6];
    os << "<polyline fill='none' stroke='" << color << "' stroke-width='1.5' points='";
    for (const auto& [x, y] : data[i].points) os << std::fixed << std::setprecision(1) << f.px(x) << "," << f.py(y) << " ";
    os << "'/>";
    if (data[i].points.size() <= 30)
      for (const auto& [x, y] : data[i].points)
        os << "<circle cx='" << f.px(x) << "' cy='" << f.py(y) << "' r='2.5' fill='" << color << "'/>";
    os << "<rect x='" << width - f.right - 130 << "' y='" << f.top + 4 + 16 * i << "' width='10' height='10' fill='" << color
       << "'/><text x='" << width - f.right - 116 << "' y='" << f.top + 13 + 16 * i << "'>" << escape(data[i].name)
       << "</text>";
  }
  os << "</svg>";
  return os.str();
}

std::string bar_chart(const std::string& title, const std::vector<double>& values, const std::string& x_label,
                      const std::string& y_label, int width, int height) {
  if (values.empty()) return no_data(title, width, height);
  std::ostringstream os;
  os << svg_open(width, height, title);
  Frame f{width, height};
  f.x0 = 0, f.x1 = static_cast<double>(values.size());
  f.y0 = 0, f.y1 = *std::max_element(values.begin(), values.end()) * 1.05;
  if (f.y1 <= 0) f.y1 = 1;
  os << axes(f, title, x_label, y_label, false);
  const double w = (f.px(1) - f.px(0));
  for (size_t i = 0; i < values.size(); ++i)
    os << "<rect x='" << std::fixed << std::setprecision(2) << f.px(static_cast<double>(i)) << "' y='" << f.py(values[i])
       << "' width='" << std::max(0.5, w * 0.9) << "' height='" << f.py(0) - f.py(values[i]) << "' fill='" << kColors[0]
       << "'/>";
  os << "</svg>";
  return os.str();
}

Series read_series(const std::string& metrics_path, const std::string& kind, const std::string& key,
                   const std::string& name) {
  Series s{name, {}};
  std::ifstream in(metrics_path);
  for (std::string line; std::getline(in, line);) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("kind", "") == kind && j.contains(key) && j.contains("step") && j[key].is_number())
        s.points.emplace_back(j["step"].get<double>(), j[key].get<double>());
    } catch (const nlohmann::json::exception&) {
      // a line cut short by an interrupted run: skip it
    }
  }
  return s;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? NAN : s / static_cast<double>(v.size());
}
double stddev(const std::vector<double>& v) {  // sample standard deviation
  if (v.size() < 2) return NAN;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}
std::string mean_sd(const std::vector<double>& v, int digits, const std::string& pm) {
  if (v.empty()) return "-";
  std::string s = fixed(mean(v), digits);
  if (v.size() > 1) s += " " + pm + " " + fixed(stddev(v), digits);
  return s;
}

}  // namespace seqgan::report
