// Building blocks of self-contained HTML reports: escaped text, images embedded as data URIs,
// SVG line and bar charts. No script, stylesheet or font is fetched: a report opens from disk.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace seqgan::report {

std::string escape(const std::string& text);  // & < > " '
std::string fixed(double value, int digits);   // "3.142"
std::string duration(double seconds);          // "12 min 05 s", "42 s"

// The stylesheet every report page shares (for a <style> element).
const char* page_style();
// A <script> that marks <body> with data-images / data-images-loaded once the page has loaded, so
// that a browser-driven check can count the images that decoded.
std::string images_loaded_script();
// A JSON file's content; an empty object when it is missing or unreadable.
nlohmann::json read_json_file(const std::string& path);
std::string base64(const std::string& bytes);

// <img> with the file's bytes as a data URI ("data:image/png;base64,..."), shown `scale` times
// its pixel size (0: as the browser lays it out), or a visible placeholder naming the file when
// it does not exist.
std::string embed_png(const std::string& path, const std::string& alt, double scale = 0);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y)
};

// An SVG line chart: one polyline per series, axes with ticks, a legend. Series without points
// are skipped; with none left a note says so. log_y plots log10 of positive y.
std::string line_chart(const std::string& title, const std::vector<Series>& series, const std::string& x_label,
                       const std::string& y_label, bool log_y = false, int width = 520, int height = 300);

// An SVG bar chart of values (e.g. a codebook histogram sorted by count), bars in the given order.
std::string bar_chart(const std::string& title, const std::vector<double>& values, const std::string& x_label,
                      const std::string& y_label, int width = 520, int height = 300);

// Mean and sample standard deviation (NaN for too few values); "m +- sd" with `pm` as the sign,
// "m" for one value, "-" for none.
double mean(const std::vector<double>& values);
double stddev(const std::vector<double>& values);
std::string mean_sd(const std::vector<double>& values, int digits, const std::string& pm);

// Reads "x"/"y" keys of the lines of a metrics.jsonl whose "kind" is `kind` (missing file: empty).
Series read_series(const std::string& metrics_path, const std::string& kind, const std::string& key,
                   const std::string& name);

}  // namespace seqgan::report
