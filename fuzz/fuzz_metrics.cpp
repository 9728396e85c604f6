// libFuzzer entry point for the metrics.jsonl reader that cuts a run's metrics back to its
// checkpoint on resume (metrics_rows_up_to). The input is the file's text; the properties: every
// kept row is a whole line of the input, in order, that parses with a step at most the limit, and
// kept plus dropped lines account for every line. Seeds: fuzz/corpus/metrics/.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "seqgan/log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  int64_t lines = 0;
  for (char c : text) lines += c == '\n';
  if (!text.empty() && text.back() != '\n') ++lines;
  for (const int64_t limit : {int64_t{-1}, int64_t{3}, std::numeric_limits<int64_t>::max()}) {
    int64_t dropped = -1;
    const std::string kept = seqgan::metrics_rows_up_to(text, limit, dropped);
    int64_t kept_lines = 0;
    size_t from = 0;  // kept rows appear in the input in order
    for (size_t pos = 0; pos < kept.size();) {
      const size_t end = kept.find('\n', pos);
      if (end == std::string::npos) __builtin_trap();  // every kept row ends with its newline
      const std::string row = kept.substr(pos, end - pos + 1);
      const size_t at = text.find(row, from);
      if (at == std::string::npos) __builtin_trap();
      from = at + row.size();
      const auto j = nlohmann::json::parse(row);
      if (j.at("step").get<int64_t>() > limit) __builtin_trap();
      ++kept_lines;
      pos = end + 1;
    }
    if (kept_lines + dropped != lines) __builtin_trap();
  }
  return 0;
}
