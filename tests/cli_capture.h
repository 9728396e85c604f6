// Runs the seqgan command in-process with its output captured, for tests of the command line.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seqgan/cli.h"

namespace seqgan::test {

struct CliResult {
  int code;
  std::string out, err;
};

inline CliResult run_cli_captured(const std::vector<std::string>& args) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int code = run_cli(args);
  return {code, testing::internal::GetCapturedStdout(), testing::internal::GetCapturedStderr()};
}

}  // namespace seqgan::test
