// JSON in and out, `--set` overrides and validation, all driven by the registry in fields.h.
// JSON was chosen over YAML: the checkpoint metadata (safetensors) is JSON already, Python reads it
// without extra packages, and one strict parser serves files, overrides and checkpoints.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "config/fields.h"
#include "io/files.h"
#include "seqgan/error.h"

namespace seqgan {
namespace config_detail {

using json = nlohmann::ordered_json;

std::string Rule::describe() const {
  if (has_range) {
    std::ostringstream os;
    os << "[" << lo << ", " << hi << "]";
    return os.str();
  }
  std::string out;
  for (const auto& c : choices) out += (out.empty() ? "" : " | ") + c;
  return out;
}

namespace {

// Edit distance, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string type_name(const int&) { return "int"; }
std::string type_name(const int64_t&) { return "int"; }
std::string type_name(const uint64_t&) { return "int"; }
std::string type_name(const double&) { return "float"; }
std::string type_name(const bool&) { return "bool"; }
std::string type_name(const std::string&) { return "string"; }
std::string type_name(const std::vector<int>&) { return "int-list"; }
std::string type_name(const std::vector<std::string>&) { return "string-list"; }

// Text that is not valid UTF-8 (a path or a mistyped value) is printed with replacement
// characters rather than making the printer throw.
std::string dump(const json& j, int indent = -1) { return j.dump(indent, ' ', false, json::error_handler_t::replace); }

template <class T>
json to_json_value(const T& v) {
  return json(v);
}

// Converts a JSON value into the field's type; throws a message (without the path) on mismatch.
template <class T>
T integral_from(const json& j) {
  if (j.is_number_integer() || j.is_number_unsigned()) {
    if constexpr (std::is_unsigned_v<T>) {
      if (j.is_number_integer() && j.get<int64_t>() < 0) throw std::invalid_argument("a non-negative integer");
      return static_cast<T>(j.get<uint64_t>());
    } else {
      const int64_t v = j.get<int64_t>();
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
        throw std::invalid_argument("an integer in the range of its type");
      return static_cast<T>(v);
    }
  }
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<T>(d);
  }
  throw std::invalid_argument("an integer");
}

void from_json_value(const json& j, int& out) { out = integral_from<int>(j); }
void from_json_value(const json& j, int64_t& out) { out = integral_from<int64_t>(j); }
void from_json_value(const json& j, uint64_t& out) { out = integral_from<uint64_t>(j); }
void from_json_value(const json& j, double& out) {
  if (!j.is_number()) throw std::invalid_argument("a number");
  out = j.get<double>();
}
void from_json_value(const json& j, bool& out) {
  if (!j.is_boolean()) throw std::invalid_argument("true or false");
  out = j.get<bool>();
}
void from_json_value(const json& j, std::string& out) {
  if (!j.is_string()) throw std::invalid_argument("a string");
  out = j.get<std::string>();
}
void from_json_value(const json& j, std::vector<int>& out) {
  if (!j.is_array()) throw std::invalid_argument("a list of integers, e.g. [1, 2, 4]");
  std::vector<int> v;
  for (const auto& e : j) v.push_back(integral_from<int>(e));
  out = v;
}
void from_json_value(const json& j, std::vector<std::string>& out) {
  if (!j.is_array()) throw std::invalid_argument("a list of strings, e.g. [\"a\", \"b\"]");
  std::vector<std::string> v;
  for (const auto& e : j) {
    if (!e.is_string()) throw std::invalid_argument("a list of strings");
    v.push_back(e.get<std::string>());
  }
  out = v;
}

// Text from the command line: JSON where it parses, else (for strings) the raw text.
json parse_cli_value(const std::string& text, bool want_string, bool want_bool) {
  if (want_bool) {
    if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  }
  if (want_string) {
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
      auto j = json::parse(text, nullptr, false);
      if (!j.is_discarded()) return j;
    }
    return text;
  }
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return text;  // reported as a type error by the caller
  return j;
}

template <class T>
std::string check_rule(const std::string& path, const T& value, const Rule& rule) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    const double v = static_cast<double>(value);
    if (rule.has_range && !(v >= rule.lo && v <= rule.hi))
      return str(path, " = ", value, " is out of range ", rule.describe());
    if (!rule.choices.empty()) {
      const std::string s = std::to_string(value);
      if (std::find(rule.choices.begin(), rule.choices.end(), s) == rule.choices.end())
        return str(path, " = ", value, " is not one of ", rule.describe());
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!rule.choices.empty() && std::find(rule.choices.begin(), rule.choices.end(), value) == rule.choices.end())
      return str(path, " = \"", value, "\" is not one of ", rule.describe());
  }
  return {};
}

std::vector<std::string> all_paths() {
  std::vector<std::string> out;
  Config c;
  visit_fields(c, [&](const std::string& p, auto&, const char*, const Rule&) { out.push_back(p); });
  return out;
}

std::string closest_path(const std::string& key) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& p : all_paths()) {
    const std::string leaf = p.substr(p.rfind('.') == std::string::npos ? 0 : p.rfind('.') + 1);
    const std::string key_leaf = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    const size_t d = std::min(edit_distance(key, p), edit_distance(key_leaf, leaf) + 1);
    if (d < best_d) {
      best_d = d;
      best = p;
    }
  }
  return best;
}

// Sets one field from JSON; returns false when no field has that path.
bool set_field(Config& c, const std::string& path, const json& value, std::string& error) {
  bool found = false;
  visit_fields(c, [&](const std::string& p, auto& field, const char*, const Rule&) {
    if (p != path) return;
    found = true;
    try {
      auto copy = field;
      from_json_value(value, copy);
      field = copy;
    } catch (const std::invalid_argument& e) {
      error = str(path, " expects ", e.what(), " (", type_name(field), "), got ", dump(value));
    } catch (const json::exception& e) {
      error = str(path, ": ", e.what());
    }
  });
  return found;
}

void flatten(const json& j, const std::string& prefix, std::vector<std::pair<std::string, json>>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object())
      flatten(*it, path, out);
    else
      out.emplace_back(path, *it);
  }
}

}  // namespace
}  // namespace config_detail

using namespace config_detail;

std::vector<FieldInfo> config_fields(const Config& config) {
  std::vector<FieldInfo> out;
  visit_fields(config, [&](const std::string& p, const auto& field, const char* help, const Rule& rule) {
    out.push_back({p, type_name(field), dump(to_json_value(field)), help, rule.describe()});
  });
  return out;
}

void config_set(Config& config, const std::string& path, const std::string& value) {
  std::string type;
  visit_fields(config, [&](const std::string& p, const auto& field, const char*, const Rule&) {
    if (p == path) type = type_name(field);
  });
  if (type.empty())
    throw Error(str("unknown configuration key '", path, "'"),
                str("did you mean '", closest_path(path), "'? `seqgan help-config` lists every key"));
  std::string error;
  set_field(config, path, parse_cli_value(value, type == "string", type == "bool"), error);
  if (!error.empty()) throw Error(error, "fix the value; `seqgan help-config` shows each key's type and range");
}

void config_apply_override(Config& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error(str("override '", assignment, "' is not of the form key=value"),
                "write e.g. --set tokenizer.codebook_size=512");
  config_set(config, assignment.substr(0, eq), assignment.substr(eq + 1));
}

std::vector<std::string> last_assignments(const std::vector<std::string>& assignments) {
  std::vector<std::string> kept;
  const auto key_of = [](const std::string& a) { return a.substr(0, a.find('=')); };
  for (const auto& a : assignments) {
    const auto same = std::find_if(kept.begin(), kept.end(), [&](const std::string& k) { return key_of(k) == key_of(a); });
    if (same == kept.end())
      kept.push_back(a);
    else
      *same = a;
  }
  return kept;
}

std::string config_to_json(const Config& config, int indent) {
  json root = json::object();
  visit_fields(config, [&](const std::string& p, const auto& field, const char*, const Rule&) {
    json* node = &root;
    size_t start = 0;
    for (size_t dot = p.find('.'); dot != std::string::npos; dot = p.find('.', start)) {
      node = &(*node)[p.substr(start, dot - start)];
      start = dot + 1;
    }
    (*node)[p.substr(start)] = to_json_value(field);
  });
  return dump(root, indent);
}

namespace {

// Configurations written before phase 2 had its own complete training section: phase 2 then
// took the settings it did not name from train_tokenizer, and log_every/image_every 0 meant
// "train_tokenizer's". Written out here, they mean what they meant when the run was made.
void upgrade_phase2_section(json& j) {
  if (!j.is_object() || !j.contains("phase2") || !j["phase2"].is_object() || !j.contains("train_tokenizer") ||
      !j["train_tokenizer"].is_object() || j["phase2"].contains("d_lr"))
    return;
  json& p2 = j["phase2"];
  for (const auto& [key, value] : j["train_tokenizer"].items()) {
    const bool inherited_zero = (key == "log_every" || key == "image_every") && p2.contains(key) && p2[key] == 0;
    if (!p2.contains(key) || inherited_zero) p2[key] = value;
  }
}

}  // namespace

Config config_from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for numbers beyond double's range (e.g. 1e999).
    throw Error(str(where, ": not valid JSON: ", e.what()), "configuration files are JSON objects");
  }
  if (!j.is_object()) throw Error(str(where, ": expected a JSON object, found ", j.type_name()));
  upgrade_phase2_section(j);
  Config config = make_preset(j.contains("preset") && j["preset"].is_string() ? j["preset"].get<std::string>() : "paper");
  std::vector<std::pair<std::string, json>> flat;
  flatten(j, "", flat);
  std::vector<std::string> problems;
  std::string hint;
  for (const auto& [path, value] : flat) {
    std::string error;
    if (!set_field(config, path, value, error)) {
      problems.push_back(str("unknown key '", path, "' (did you mean '", closest_path(path), "'?)"));
      hint = "remove or rename the key; `seqgan help-config` lists every key";
    } else if (!error.empty()) {
      problems.push_back(error);
    }
  }
  if (!problems.empty()) {
    std::string msg = where + ": invalid configuration:";
    for (const auto& p : problems) msg += "\n  " + p;
    throw Error(msg, hint.empty() ? "fix the values listed above" : hint);
  }
  validate(config);
  return config;
}

Config config_from_file(const std::string& path) {
  return config_from_json(read_file_text(path, "check the path given to --config (the configuration file)"), path);
}

int tokenizer_downsample_factor(const TokenizerConfig& t) {
  return 1 << (std::max<int>(1, static_cast<int>(t.channel_mult.size())) - 1);
}

int latent_size(const Config& config) { return config.data.resolution / tokenizer_downsample_factor(config.tokenizer); }

int transformer_vocab_size(const Config& config) {
  return config.tokenizer.codebook_size + std::max(1, config.transformer.num_classes) + 1;
}

int transformer_seq_len(const Config& config) {
  const int s = latent_size(config);
  return s * s;
}

void validate(const Config& c) {
  std::vector<std::string> problems;
  visit_fields(c, [&](const std::string& p, const auto& field, const char*, const Rule& rule) {
    auto msg = check_rule(p, field, rule);
    if (!msg.empty()) problems.push_back(msg);
  });
  const auto& t = c.tokenizer;
  if (t.channel_mult.empty() || t.channel_mult.size() > 10)
    problems.push_back(str("tokenizer.channel_mult must have 1 to 10 levels, got ", t.channel_mult.size()));
  for (int m : t.channel_mult) {
    if (m < 1 || m > 64) problems.push_back(str("tokenizer.channel_mult entries must be in [1, 64], got ", m));
    else if ((t.base_channels * m) % t.norm_groups != 0)
      problems.push_back(str("tokenizer.base_channels * channel_mult (", t.base_channels * m,
                             ") must be divisible by tokenizer.norm_groups (", t.norm_groups, ")"));
    else if ((t.base_channels * m) % t.attn_heads != 0)
      problems.push_back(str("level width ", t.base_channels * m, " must be divisible by tokenizer.attn_heads (",
                             t.attn_heads, ")"));
  }
  const int f = tokenizer_downsample_factor(t);
  if (c.data.resolution % f != 0)
    problems.push_back(str("data.resolution (", c.data.resolution, ") must be divisible by the downsampling factor f = ",
                           f, " of tokenizer.channel_mult"));
  if (c.transformer.width % c.transformer.heads != 0)
    problems.push_back(str("transformer.width (", c.transformer.width, ") must be divisible by transformer.heads (",
                           c.transformer.heads, ")"));
  const std::vector<std::string> taps{"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "logit"};
  for (const auto* list : {&c.perceptual.low_taps, &c.perceptual.sem_taps})
    for (const auto& tap : *list)
      if (std::find(taps.begin(), taps.end(), tap) == taps.end())
        problems.push_back(str("perceptual tap '", tap, "' is unknown; taps are relu1_2 relu2_2 relu3_3 relu4_3 relu5_3 logit"));
  if (!problems.empty()) {
    std::string msg = "invalid configuration:";
    for (const auto& p : problems) msg += "\n  " + p;
    throw Error(msg, "fix the values listed above (with --set key=value or in the config file)");
  }
}

}  // namespace seqgan
