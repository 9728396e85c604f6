#include "cli/stages.h"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "seqgan/error.h"
#include "seqgan/runtime.h"
#include "train/run.h"

namespace seqgan::cli {

namespace fs = std::filesystem;
using nlohmann::json;

std::string join_args(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& x : args) s += (s.empty() ? "" : " ") + (x.find(' ') == std::string::npos ? x : "'" + x + "'");
  return s;
}

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

StageRunner::StageRunner(std::string state_path, std::vector<std::string> common, std::string job)
    : path_(std::move(state_path)), common_(std::move(common)), job_(std::move(job)) {
  const fs::path parent = fs::path(path_).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  state_ = fs::exists(path_) ? json::parse(read_text(path_)) : json::object();
  if (!state_.contains("stages")) state_["stages"] = json::array();
  stop_ = install_stop_handlers();
}

bool StageRunner::done(const std::string& name) const {
  for (const auto& s : state_["stages"])
    if (s["name"] == name) return true;
  return false;
}

double StageRunner::seconds() const {
  double total = 0;
  for (const auto& s : state_["stages"]) total += s.value("seconds", 0.0);
  return total;
}

void StageRunner::stage(const std::string& name, const std::vector<std::vector<std::string>>& commands,
                        const std::vector<std::string>& described, const std::function<void()>& in_process) {
  if (done(name)) {
    std::cout << job_ << ": " << name << " finished before, skipped\n";
    return;
  }
  std::cout << job_ << ": " << name << "\n" << std::flush;
  const auto start = std::chrono::steady_clock::now();
  json lines = json::array();
  for (const auto& d : described) lines.push_back(d);
  if (in_process) {
    in_process();
    throw_if_stopped(job_ + " stage '" + name + "'");
  } else {
    for (auto args : commands) {
      if (described.empty()) lines.push_back("seqgan " + join_args(args));
      args.insert(args.end(), common_.begin(), common_.end());
      const int code = run_cli(args);
      throw_if_stopped(job_ + " stage '" + name + "'");
      SEQGAN_CHECK_HINT(code == 0, "fix the problem above and run the same command again: finished stages are skipped",
                        job_, " stage '", name, "' failed: seqgan ", join_args(args));
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  state_["stages"].push_back({{"name", name}, {"seconds", secs}, {"commands", lines}});
  save();
}

std::vector<std::string> StageRunner::resumable(std::vector<std::string> args, const std::string& run_dir) {
  // A stage killed before its first checkpoint left a run without a state: it starts over.
  args.push_back(fs::exists(run_dir + "/checkpoint.safetensors") ? "--resume" : "--overwrite");
  return args;
}

void StageRunner::save() { write_text_atomic(path_, state_.dump(2)); }

}  // namespace seqgan::cli
