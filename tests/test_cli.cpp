#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "cli_capture.h"
#include "seqgan/cli.h"
#include "seqgan/config.h"

using namespace seqgan;

namespace {
test::CliResult run(const std::vector<std::string>& args) { return test::run_cli_captured(args); }
}  // namespace

TEST(Cli, TopLevelHelpListsEveryCommand) {
  const auto r = run({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const auto& c : cli_commands()) EXPECT_NE(r.out.find(c.name), std::string::npos) << c.name;
  EXPECT_EQ(run({}).code, 2);
}

TEST(Cli, EveryCommandHasHelpWithItsOptionsAndRealDefaults) {
  for (const auto& c : cli_commands()) {
    const auto r = run({c.name, "--help"});
    EXPECT_EQ(r.code, 0) << c.name;
    for (const auto& o : c.options) {
      EXPECT_NE(r.out.find(o.name), std::string::npos) << c.name << " " << o.name;
      if (!o.value_name.empty() && !o.default_value.empty()) {
        EXPECT_NE(r.out.find("(default: " + o.default_value + ")"), std::string::npos) << c.name << " " << o.name;
      }
    }
  }
}

TEST(Cli, EveryOptionParses) {
  // Each registered option is accepted by its command's parser, with its default (or a sample)
  // value, and reads back what was given.
  for (const auto& c : cli::all_commands()) {
    for (const auto& o : c.info.options) {
      std::vector<std::string> args;
      for (size_t i = 0; i < c.info.positionals.size(); ++i) args.push_back("file");
      args.push_back(o.name);
      const std::string value = o.default_value.empty() ? "7" : o.default_value;
      if (!o.value_name.empty()) args.push_back(value);
      cli::Args parsed;
      ASSERT_NO_THROW(parsed = c.parse(args)) << c.info.name << " " << o.name;
      EXPECT_TRUE(parsed.has(o.name)) << c.info.name << " " << o.name;
      if (!o.value_name.empty()) {
        EXPECT_EQ(parsed.get(o.name), value) << c.info.name << " " << o.name;
      }
    }
    EXPECT_THROW(c.parse({"--no-such-option"}), cli::UsageError) << c.info.name;
  }
}

TEST(Cli, InfoJsonPrintsResolvedConfig) {
  const auto r = run({"info", "--preset", "fmnist", "--json", "--set", "tokenizer.codebook_size=128", "--threads", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["preset"], "fmnist");
  EXPECT_EQ(j["config"]["tokenizer"]["codebook_size"], 128);
  EXPECT_EQ(j["config"]["threads"], 1);
  EXPECT_TRUE(j.contains("parameters"));
  EXPECT_EQ(j["derived"]["tokens_per_image"], 64);
}

TEST(Cli, MistakesAreClearErrors) {
  auto r = run({"infoo"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("did you mean 'info'"), std::string::npos) << r.err;
  r = run({"info", "--preest", "paper"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("did you mean '--preset'"), std::string::npos) << r.err;
  r = run({"info", "--preset", "imagenet"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown preset 'imagenet'"), std::string::npos) << r.err;
  r = run({"info", "--set", "tokenizer.codebok_size=5"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("tokenizer.codebook_size"), std::string::npos) << r.err;
  r = run({"info", "--set", "perceptual.alpha=2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("out of range"), std::string::npos) << r.err;
  r = run({"info", "--config", "/nonexistent/config.json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the configuration file"), std::string::npos) << r.err;
}

TEST(Cli, HelpConfigListsEveryKey) {
  const auto r = run({"help-config", "--preset", "fmnist"});
  ASSERT_EQ(r.code, 0);
  for (const auto& f : config_fields(make_preset("fmnist"))) EXPECT_NE(r.out.find(f.path + " = " + f.value), std::string::npos) << f.path;
}

TEST(Cli, BinaryExitCodes) {
  EXPECT_EQ(std::system((std::string(SEQGAN_BINARY) + " --version > /dev/null").c_str()), 0);
  const int status = std::system((std::string(SEQGAN_BINARY) + " nosuchcommand 2> /dev/null").c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

TEST(CliReference, ReadmeHoldsTheGeneratedReference) {
  // The README's command reference is generated from the option registry; regenerate it with
  //   build/seqgan cli-reference  (between the cli-reference markers of README.md).
  std::ifstream in(std::string(SEQGAN_SOURCE_DIR) + "/README.md");
  std::stringstream readme;
  readme << in.rdbuf();
  const std::string text = readme.str();
  const std::string begin = "<!-- cli-reference:begin -->\n", end = "<!-- cli-reference:end -->";
  const auto b = text.find(begin), e = text.find(end);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  EXPECT_EQ(text.substr(b + begin.size(), e - b - begin.size()), seqgan::cli_reference_markdown())
      << "README.md is out of date: paste the output of `build/seqgan cli-reference` between the markers";
}

TEST(Cli, TopLevelHelpShowsEveryDescriptionWhole) {
  // `seqgan --help` shows one line per command: a brief, or a summary of one line, never the
  // first line of a longer summary cut mid-sentence.
  const auto help = seqgan::test::run_cli_captured({"--help"});
  for (const auto& c : seqgan::cli_commands()) {
    const std::string shown = c.brief.empty() ? c.summary : c.brief;
    EXPECT_EQ(shown.find('\n'), std::string::npos) << c.name << ": the summary needs a brief";
    EXPECT_LE(shown.size(), 100u) << c.name << ": " << shown;
    EXPECT_NE(help.out.find(c.name + std::string(c.name.size() < 20 ? 20 - c.name.size() : 1, ' ') + shown + "\n"),
              std::string::npos)
        << c.name << " in --help:\n" << help.out;
  }
}
