#include "cli/cli.h"

#include <iostream>
#include <sstream>

#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "train/distributed.h"
#include "train/run.h"

namespace seqgan::cli {

bool Args::has(const std::string& name) const { return values_.count(name) > 0; }

std::string Args::get(const std::string& name) const {
  const auto it = values_.find(name);
  if (it != values_.end() && !it->second.empty()) return it->second.back();
  const auto d = defaults_.find(name);
  return d == defaults_.end() ? std::string() : d->second;
}

std::vector<std::string> Args::all(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

int64_t Args::get_int(const std::string& name) const {
  const std::string v = get(name);
  try {
    size_t used = 0;
    const int64_t x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw UsageError(str(name, " expects an integer, got '", v, "'"));
}

double Args::get_double(const std::string& name) const {
  const std::string v = get(name);
  try {
    size_t used = 0;
    const double x = std::stod(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw UsageError(str(name, " expects a number, got '", v, "'"));
}

Command& Command::option(const std::string& name, const std::string& value_name, const std::string& default_value,
                         const std::string& help, bool repeatable) {
  info.options.push_back({name, value_name, default_value, help, repeatable});
  return *this;
}

Command& Command::flag(const std::string& name, const std::string& help) {
  info.options.push_back({name, "", "", help, false});
  return *this;
}

Command& Command::positional(const std::string& name) {
  info.positionals.push_back(name);
  return *this;
}

Command& Command::config_options(const std::string& default_preset) {
  std::string names;
  for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  option("--preset", "NAME", default_preset, "configuration preset: " + names);
  option("--config", "FILE", "", "JSON configuration file (its \"preset\" key picks the base)");
  option("--set", "KEY=VALUE", "", "override one configuration value (see `seqgan help-config`)", true);
  option("--threads", "N", "0", "CPU threads (0: all cores)");
  option("--device", "DEV", "auto", "auto, cpu or cuda");
  return *this;
}

Command& Command::weights_option(const std::string& name, const std::string& what) {
  return option(name, "WHICH", "auto",
                "weights of " + what + ": auto (the exponential moving average when the file has one), ema or raw");
}

WeightChoice weights_of(const Args& args, const std::string& name) {
  const std::string text = args.get(name);
  if (text != "auto" && text != "ema" && text != "raw")
    throw UsageError(name + " must be auto (the EMA weights when the file has them), ema or raw, got '" + text + "'");
  return parse_weight_choice(text);
}

Args Command::parse(const std::vector<std::string>& args) const {
  Args out;
  for (const auto& o : info.options)
    if (!o.value_name.empty()) out.defaults_[o.name] = o.default_value;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      out.positionals_.push_back(a);
      continue;
    }
    std::string value;
    bool has_inline = false;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_inline = true;
    }
    const CliOptionInfo* opt = nullptr;
    for (const auto& o : info.options)
      if (o.name == a) opt = &o;
    if (!opt) {
      std::string best;
      size_t best_score = 1000;
      for (const auto& o : info.options) {
        size_t common = 0;
        while (common < o.name.size() && common < a.size() && o.name[common] == a[common]) ++common;
        const size_t score = o.name.size() + a.size() - 2 * common;
        if (score < best_score) best_score = score, best = o.name;
      }
      throw UsageError(str("unknown option '", a, "' for `seqgan ", info.name, "`",
                           best.empty() ? "" : str(" (did you mean '", best, "'?)")));
    }
    if (opt->value_name.empty()) {
      if (has_inline) throw UsageError(str(a, " takes no value"));
      out.values_[a].push_back("1");
      continue;
    }
    if (!has_inline) {
      if (i + 1 >= args.size()) throw UsageError(str(a, " needs a value (", opt->value_name, ")"));
      value = args[++i];
    }
    if (!opt->repeatable && out.values_.count(a)) throw UsageError(str(a, " given twice"));
    out.values_[a].push_back(value);
  }
  if (out.positionals_.size() < info.positionals.size()) {
    throw UsageError(str("`seqgan ", info.name, "` needs ", info.positionals.size(), " argument(s): ",
                         info.positionals.empty() ? "" : info.positionals[out.positionals_.size()], " is missing"));
  }
  if (out.positionals_.size() > info.positionals.size() &&
      (info.positionals.empty() || info.positionals.back().find("...") == std::string::npos))
    throw UsageError(str("unexpected argument '", out.positionals_[info.positionals.size()], "' for `seqgan ",
                         info.name, "`"));
  return out;
}

std::string Command::help() const {
  std::ostringstream os;
  os << "usage: seqgan " << info.name << " [options]";
  for (const auto& p : info.positionals) os << " " << p;
  os << "\n\n" << info.summary << "\n\noptions:\n";
  for (const auto& o : info.options) {
    std::string left = "  " + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
    if (left.size() < 26) left += std::string(26 - left.size(), ' ');
    else left += "\n" + std::string(26, ' ');
    os << left << o.help;
    if (!o.value_name.empty() && !o.default_value.empty()) os << " (default: " << o.default_value << ")";
    if (o.repeatable) os << " [repeatable]";
    os << "\n";
  }
  os << "  --help                  show this help\n";
  return os.str();
}

DataConfig model_data(const Config& stored, const Args& args, const std::string& model) {
  Config c = stored;
  for (const auto& s : args.all("--set"))
    if (s.rfind("data.", 0) == 0) config_apply_override(c, s);
  if (c.data.resolution != stored.data.resolution || c.data.channels != stored.data.channels)
    throw UsageError(str(model, " was trained on ", stored.data.resolution, "x", stored.data.resolution, " images with ",
                         stored.data.channels, " channel(s); data.resolution and data.channels are the model's"));
  validate(c);
  return c.data;
}

Config load_config(const Args& args) {
  Config config = args.has("--config") ? config_from_file(args.get("--config")) : make_preset(args.get("--preset"));
  if (args.has("--config") && args.has("--preset"))
    throw UsageError("give either --preset or --config (a config file names its preset itself)");
  for (const auto& s : args.all("--set")) config_apply_override(config, s);
  if (args.has("--threads")) config_set(config, "threads", args.get("--threads"));
  if (args.has("--device")) config_set(config, "device", args.get("--device"));
  validate(config);
  set_threads(config.threads);
  return config;
}

std::shared_ptr<ProcessGroup> join_process_group(const Config& config) {
  auto group = ProcessGroup::from_environment(to_device(resolve_device(config.device)));
  if (group && group->rank() != 0 && log_level() < LogLevel::Warn) set_log_level(LogLevel::Warn);
  return group;
}

std::optional<std::vector<int64_t>> parse_integer_list(const std::string& text, std::string* bad) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    size_t used = 0;
    try {
      out.push_back(std::stoll(item, &used));
    } catch (const std::logic_error&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) {
      if (bad) *bad = item;
      return std::nullopt;
    }
  }
  return out;
}

std::vector<Command> all_commands() {
  return {info_command(),           help_config_command(), inspect_command(),  train_classifier_command(),
          train_tokenizer_command(), reconstruct_command(), tokenize_command(), decode_command(),
          train_transformer_command(), sample_command(),         visualize_command(), evaluate_command(),
          fid_stats_command(),         dataset_command(),     pack_shards_command(), demo_command(),
          report_command(),            experiment_command(),  bench_command()};
}

namespace {
std::string top_help(const std::vector<Command>& commands) {
  std::ostringstream os;
  os << "seqgan " << SEQGAN_VERSION
     << ": SeQ-GAN VQ tokenizers and AR/NAR generative transformers in native C++\n\n"
        "usage: seqgan <command> [options]\n       seqgan <command> --help\n\ncommands:\n";
  for (const auto& c : commands) {
    std::string left = "  " + c.info.name;
    left += std::string(left.size() < 22 ? 22 - left.size() : 1, ' ');
    os << left << (c.info.brief.empty() ? c.info.summary : c.info.brief) << "\n";
  }
  os << "\nglobal options: --quiet, --verbose, --version\n"
        "`seqgan cli-reference` prints every command and option as Markdown\n";
  return os.str();
}
}  // namespace

}  // namespace seqgan::cli

namespace seqgan {

std::vector<CliCommandInfo> cli_commands() {
  std::vector<CliCommandInfo> out;
  for (const auto& c : cli::all_commands()) out.push_back(c.info);
  return out;
}

std::string cli_reference_markdown() {
  std::ostringstream os;
  for (const auto& c : cli_commands()) {
    os << "#### `seqgan " << c.name;
    for (const auto& p : c.positionals) os << " " << p;
    os << "`\n\n";
    std::istringstream summary(c.summary);
    for (std::string line; std::getline(summary, line);) os << line << (line.rfind("  ", 0) == 0 ? "  \n" : "\n");
    os << "\n| option | default | meaning |\n|---|---|---|\n";
    for (const auto& o : c.options) {
      std::string help = o.help;
      for (size_t at = 0; (at = help.find('|', at)) != std::string::npos; at += 2) help.replace(at, 1, "\\|");
      os << "| `" << o.name << (o.value_name.empty() ? "" : " " + o.value_name) << "` | "
         << (o.default_value.empty() ? "" : "`" + o.default_value + "`") << " | " << help
         << (o.repeatable ? " (repeatable)" : "") << " |\n";
    }
    os << "\n";
  }
  return os.str();
}

int run_cli(const std::vector<std::string>& raw_args) {
  using namespace cli;
  tune_memory_allocator();
  std::vector<std::string> args;
  for (const auto& a : raw_args) {
    if (a == "--quiet") set_log_level(LogLevel::Warn);
    else if (a == "--verbose") set_log_level(LogLevel::Debug);
    else args.push_back(a);
  }
  const auto commands = all_commands();
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << top_help(commands);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "cli-reference") {
    std::cout << cli_reference_markdown();
    return 0;
  }
  if (args[0] == "--version") {
    std::cout << "seqgan " << SEQGAN_VERSION << "\n";
    return 0;
  }
  const Command* cmd = nullptr;
  for (const auto& c : commands)
    if (c.info.name == args[0]) cmd = &c;
  if (!cmd) {
    std::string best;
    size_t best_d = 1000;
    for (const auto& c : commands) {
      size_t common = 0;
      while (common < c.info.name.size() && common < args[0].size() && c.info.name[common] == args[0][common]) ++common;
      const size_t d = c.info.name.size() + args[0].size() - 2 * common;
      if (d < best_d) best_d = d, best = c.info.name;
    }
    std::cerr << "seqgan: unknown command '" << args[0] << "' (did you mean '" << best
              << "'?)\nrun `seqgan --help` for the list of commands\n";
    return 2;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  for (const auto& a : rest)
    if (a == "--help" || a == "-h") {
      std::cout << cmd->help();
      return 0;
    }
  try {
    return cmd->run(cmd->parse(rest));
  } catch (const Interrupted& e) {
    std::cerr << "seqgan " << cmd->info.name << ": " << e.what() << "; nothing half-written was left\n";
    return e.exit_code();
  } catch (const UsageError& e) {
    std::cerr << "seqgan " << cmd->info.name << ": " << e.what() << "\nrun `seqgan " << cmd->info.name
              << " --help` for its options\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "seqgan " << cmd->info.name << ": error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "seqgan " << cmd->info.name << ": error in libtorch: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "seqgan " << cmd->info.name << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace seqgan
