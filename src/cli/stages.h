// Resumable multi-stage jobs (`seqgan demo`, `seqgan experiment`): each finished stage is recorded
// in a JSON state file with its time and commands, and skipped when the job runs again; training
// stages resume from the checkpoint an interrupted run left.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/signals.h"
#include "seqgan/error.h"

namespace seqgan::cli {

std::string join_args(const std::vector<std::string>& args);  // shell-like, quoting words with spaces
std::string now_text();                                         // "YYYY-MM-DD HH:MM:SS UTC"

class StageRunner {
 public:
  // `state_path`: the JSON file of finished stages (created with its directory); `common`:
  // arguments added to every command; `job`: the name that prefixes progress lines.
  StageRunner(std::string state_path, std::vector<std::string> common, std::string job);

  bool done(const std::string& name) const;
  // Runs the commands of a stage (each a `seqgan` argument list) unless it finished before, or,
  // given `in_process`, that function instead, recording `described` as its commands. A failing
  // command ends the job with an error; a stop request (Ctrl-C, SIGTERM) throws Interrupted.
  void stage(const std::string& name, const std::vector<std::vector<std::string>>& commands,
             const std::vector<std::string>& described = {}, const std::function<void()>& in_process = {});
  // `args` plus --resume when `run_dir` holds a checkpoint, else --overwrite (a run killed before
  // its first checkpoint starts over).
  static std::vector<std::string> resumable(std::vector<std::string> args, const std::string& run_dir);
  // Seconds of all finished stages.
  double seconds() const;

  nlohmann::json& state() { return state_; }
  void save();
  bool stop_requested() const { return stop_(); }

  using Interrupted = seqgan::Interrupted;

 private:
  std::string path_;
  std::vector<std::string> common_;
  std::string job_;
  nlohmann::json state_;
  StopFlag stop_;
};

}  // namespace seqgan::cli
