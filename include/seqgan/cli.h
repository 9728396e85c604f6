// The `seqgan` command, as a library function so that tests and embedders can run it in-process.
#pragma once

#include <string>
#include <vector>

namespace seqgan {

// Runs `seqgan args...` (args excludes the program name). Prints errors and returns the exit code:
// 0 success, 1 runtime error, 2 usage error, 128 + signal when SIGINT (130) or SIGTERM (143)
// stopped it.
int run_cli(const std::vector<std::string>& args);

struct CliOptionInfo {
  std::string name;        // "--preset"
  std::string value_name;  // "NAME", empty for a flag
  std::string default_value;
  std::string help;
  bool repeatable = false;
};

struct CliCommandInfo {
  std::string name;
  std::string brief;    // one line for `seqgan --help`; empty when the summary is one line
  std::string summary;  // the whole description (`seqgan CMD --help`, the reference)
  std::vector<CliOptionInfo> options;
  std::vector<std::string> positionals;  // names of positional arguments
};

std::vector<CliCommandInfo> cli_commands();

// The command-line reference in Markdown, generated from the option registry (the README's
// "Command reference" section is this text; `seqgan cli-reference` prints it).
std::string cli_reference_markdown();

}  // namespace seqgan
