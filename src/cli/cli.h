// The option registry and argument parsing shared by all subcommands.
//
// The registry (Command::option/flag/positional) is the one description of every command's
// options: the parser, `--help`, the README's command reference (`seqgan cli-reference`, kept
// current by a test) and the test that parses every option with its printed default all come
// from it. A general parser such as CLI11 (Debian's libcli11-dev) would hold its own
// description of the options, so help and the reference would need this registry beside it or
// an adapter as large as the parser it replaces (Command::parse is about 40 lines). The
// configuration keys that `--set KEY=VALUE` takes are typed, ranged and suggested ("did you
// mean") by the config registry (config/fields.h) whichever parser reads argv, and what CLI11
// adds beyond that (nested subcommands, INI/TOML files, option groups) seqgan does not use: its
// configuration files are JSON read through the same config registry.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqgan/cli.h"
#include "seqgan/checkpoint.h"
#include "seqgan/config.h"

namespace seqgan {
class ProcessGroup;
}

namespace seqgan::cli {

class Args {
 public:
  bool has(const std::string& name) const;
  std::string get(const std::string& name) const;  // the value, or the option's default
  std::vector<std::string> all(const std::string& name) const;
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  friend struct Command;
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, std::string> defaults_;
  std::vector<std::string> positionals_;
};

struct Command {
  CliCommandInfo info;
  std::function<int(const Args&)> run;

  Command& option(const std::string& name, const std::string& value_name, const std::string& default_value,
                  const std::string& help, bool repeatable = false);
  Command& flag(const std::string& name, const std::string& help);
  Command& positional(const std::string& name);
  // Adds --preset, --config, --set, --threads, --device.
  Command& config_options(const std::string& default_preset = "fmnist");
  // Adds --weights (or another name): which weights of a model file to load (see WeightChoice),
  // `what` naming the file.
  Command& weights_option(const std::string& name = "--weights", const std::string& what = "the model files");
  Args parse(const std::vector<std::string>& args) const;  // throws UsageError
  std::string help() const;
};

// A mistake on the command line (exit code 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Comma-separated integers ("1,2,3"), or nullopt when an item is not an integer (`bad`, when
// given, receives that item).
std::optional<std::vector<int64_t>> parse_integer_list(const std::string& text, std::string* bad = nullptr);

// The --weights (or `name`) choice.
WeightChoice weights_of(const Args& args, const std::string& name = "--weights");

// The resolved config from --preset, --config and --set, validated; threads are set from it.
Config load_config(const Args& args);

// The data settings for a command that uses a trained model: the model file's own (`stored`,
// what it was trained on) with the command line's `--set data.KEY=VALUE` applied, so that a
// trained tokenizer can encode or be measured on other data. The resolution and channels are
// the model's; an override that changes them is refused. `model` names the file in errors.
DataConfig model_data(const Config& stored, const Args& args, const std::string& model);

// The data-parallel group described by the environment (RANK, WORLD_SIZE, ...; see
// train/distributed.h), or nullptr for a single process. Ranks other than 0 log only warnings.
std::shared_ptr<ProcessGroup> join_process_group(const Config& config);

std::vector<Command> all_commands();

// Subcommands, each defined in its own file.
Command info_command();
Command inspect_command();
Command help_config_command();
Command train_classifier_command();
Command train_tokenizer_command();
Command reconstruct_command();
Command tokenize_command();
Command decode_command();
Command train_transformer_command();
Command sample_command();
Command visualize_command();
Command evaluate_command();
Command fid_stats_command();
Command dataset_command();
Command pack_shards_command();
Command demo_command();
Command report_command();
Command experiment_command();
Command bench_command();

}  // namespace seqgan::cli
