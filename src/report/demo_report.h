// The demo's report: DIR/report.html from what a `seqgan demo` run directory holds.
#pragma once

#include <string>

namespace seqgan::report {

// Reads DIR/demo.json (stages, times, machine, settings), DIR/metrics.json (evaluation), the
// runs' metrics.jsonl files and figures, and writes DIR/report.html (self-contained; parts that
// are missing are shown as such). Returns the report's path.
std::string write_demo_report(const std::string& dir);

}  // namespace seqgan::report
