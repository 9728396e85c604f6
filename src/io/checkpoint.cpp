// Module checkpoints on top of safetensors; the promises are in seqgan/checkpoint.h.
#include "seqgan/checkpoint.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <sstream>

#include "seqgan/error.h"

namespace seqgan {
namespace {

const char* const kReservedKeys[] = {"format", "format_version", "kind", "config", "step"};

bool is_reserved(const std::string& key) {
  for (const char* k : kReservedKeys)
    if (key == k) return true;
  return false;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Decimal digits only: "1e3", " 7" or "+7" in a checkpoint means something wrote it wrongly.
bool parse_int(const std::string& text, int64_t& value) {
  if (text.empty() || text.front() == '+') return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

const std::string& require(const safetensors::Metadata& metadata, const char* key, const std::string& source) {
  auto it = metadata.find(key);
  SEQGAN_CHECK_HINT(it != metadata.end(), "the file was not written by save_checkpoint", source,
                    ": the checkpoint metadata has no '", key, "'");
  return it->second;
}

std::string describe_tensor(const at::Tensor& t) { return str(t.sizes(), " ", t.scalar_type()); }

// Maps a file key to a module key through the first matching rename rule.
std::string renamed(const std::string& key, const LoadOptions& options) {
  for (const auto& [from, to] : options.rename)
    if (starts_with(key, from)) return to + key.substr(from.size());
  return key;
}

bool selected(const std::string& key, const LoadOptions& options) {
  if (options.prefixes.empty()) return true;
  for (const auto& p : options.prefixes)
    if (starts_with(key, p)) return true;
  return false;
}

}  // namespace

safetensors::Metadata CheckpointMeta::to_metadata() const {
  SEQGAN_CHECK_HINT(!kind.empty(), "set CheckpointMeta::kind, e.g. \"tokenizer\"",
                    "expected a checkpoint kind, found an empty one");
  SEQGAN_CHECK_HINT(nlohmann::json::accept(config_json),
                    "store the resolved config as JSON text, \"{}\" if there is none",
                    "checkpoint config is not valid JSON: '", config_json.substr(0, 80), "'");
  SEQGAN_CHECK(step >= 0, "expected a non-negative step, found ", step);
  safetensors::Metadata metadata;
  for (const auto& [key, value] : extra) {
    SEQGAN_CHECK_HINT(!is_reserved(key), "set the field of CheckpointMeta instead", "extra metadata key '", key,
                      "' is reserved");
    metadata[key] = value;
  }
  metadata["format"] = kCheckpointFormat;
  metadata["format_version"] = std::to_string(kCheckpointFormatVersion);
  metadata["kind"] = kind;
  metadata["config"] = config_json;
  metadata["step"] = std::to_string(step);
  return metadata;
}

CheckpointMeta CheckpointMeta::from_metadata(const safetensors::Metadata& metadata, const std::string& source) {
  const char* const plain_hint =
      "a plain safetensors file (e.g. converted Python weights) loads with safetensors::load and load_state_dict";
  auto format = metadata.find("format");
  SEQGAN_CHECK_HINT(format != metadata.end(), plain_hint, source,
                    ": not a seqgan checkpoint: expected __metadata__ format 'seqgan', found no format");
  SEQGAN_CHECK_HINT(format->second == kCheckpointFormat, plain_hint, source,
                    ": not a seqgan checkpoint: expected __metadata__ format 'seqgan', found '", format->second, "'");
  const std::string& version_text = require(metadata, "format_version", source);
  int64_t version = 0;
  SEQGAN_CHECK_HINT(parse_int(version_text, version) && version >= 1, "the file is damaged; write it again", source,
                    ": expected format_version to be a positive integer, found '", version_text, "'");
  SEQGAN_CHECK_HINT(version <= kCheckpointFormatVersion, "update seqgan to read it", source,
                    ": the checkpoint has format_version ", version, ", newer than this build reads (",
                    kCheckpointFormatVersion, ")");

  CheckpointMeta meta;
  meta.kind = require(metadata, "kind", source);
  meta.config_json = require(metadata, "config", source);
  const std::string& step_text = require(metadata, "step", source);
  SEQGAN_CHECK_HINT(parse_int(step_text, meta.step) && meta.step >= 0, "the file is damaged; write it again", source,
                    ": expected step to be a non-negative integer, found '", step_text, "'");
  for (const auto& [key, value] : metadata)
    if (!is_reserved(key)) meta.extra.emplace(key, value);
  return meta;
}

safetensors::TensorMap state_dict(const torch::nn::Module& module) {
  safetensors::TensorMap tensors;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (!t.defined()) return;
    SEQGAN_CHECK(tensors.emplace(name, t).second, "the module has a parameter and a buffer both named '", name, "'");
  };
  for (const auto& item : module.named_parameters(/*recurse=*/true)) add(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) add(item.key(), item.value());
  return tensors;
}

void load_state_dict(torch::nn::Module& module, const safetensors::TensorMap& tensors, const LoadOptions& options,
                     const std::string& source) {
  safetensors::TensorMap expected;
  for (auto& [name, t] : state_dict(module))
    if (selected(name, options)) expected.emplace(name, t);

  std::vector<std::string> problems;
  bool shape_or_key_problem = false, dtype_problem = false;
  for (const auto& prefix : options.prefixes) {
    bool used = false;
    for (const auto& [name, t] : expected) used = used || starts_with(name, prefix);
    if (!used) problems.push_back(str("prefix '", prefix, "' matches no tensor of the module"));
    shape_or_key_problem = shape_or_key_problem || !used;
  }

  std::map<std::string, std::pair<std::string, at::Tensor>> given;  // module key -> (file key, tensor)
  for (const auto& [file_key, t] : tensors) {
    const std::string key = renamed(file_key, options);
    if (!selected(key, options)) continue;
    SEQGAN_CHECK(t.defined(), source, ": tensor '", file_key, "' is undefined");
    auto [it, fresh] = given.emplace(key, std::make_pair(file_key, t));
    if (!fresh) {
      problems.push_back(str("tensors '", it->second.first, "' and '", file_key, "' both load into '", key, "'"));
      shape_or_key_problem = true;
    }
  }

  for (const auto& [name, dst] : expected) {
    auto it = given.find(name);
    if (it == given.end()) {
      problems.push_back(str("missing tensor '", name, "' ", describe_tensor(dst)));
      shape_or_key_problem = true;
      continue;
    }
    const at::Tensor& src = it->second.second;
    if (src.sizes() != dst.sizes()) {
      problems.push_back(str("tensor '", name, "' has wrong shape; expected ", dst.sizes(), ", got ", src.sizes()));
      shape_or_key_problem = true;
    } else if (src.scalar_type() != dst.scalar_type() && !options.convert_dtype) {
      problems.push_back(
          str("tensor '", name, "' has wrong dtype; expected ", dst.scalar_type(), ", got ", src.scalar_type()));
      dtype_problem = true;
    }
  }
  for (const auto& [name, entry] : given) {
    if (expected.count(name)) continue;
    const std::string was = entry.first == name ? "" : str(" (file key '", entry.first, "')");
    problems.push_back(str("unexpected tensor '", name, "'", was, " ", describe_tensor(entry.second)));
    shape_or_key_problem = true;
  }

  if (!problems.empty()) {
    std::ostringstream os;
    os << source << ": the tensors do not fit the module (" << problems.size() << " difference"
       << (problems.size() == 1 ? "" : "s") << "):";
    for (const auto& p : problems) os << "\n  " << p;
    std::string hint;
    if (shape_or_key_problem)
      hint = "was the file written for another model or config? To load part of it, name the key prefixes in "
             "LoadOptions::prefixes (and LoadOptions::rename to map names)";
    if (dtype_problem)
      hint += str(hint.empty() ? "" : "; ", "set LoadOptions::convert_dtype to convert the values");
    throw Error(str("load_state_dict: ", os.str()), hint);
  }

  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : expected) {
    at::Tensor d = dst;
    d.copy_(given.at(name).second);
  }
}

void save_checkpoint(const std::string& path, const torch::nn::Module& module, const CheckpointMeta& meta,
                     const safetensors::TensorMap& extra) {
  auto tensors = state_dict(module);
  for (const auto& [k, v] : extra) {
    SEQGAN_CHECK(tensors.emplace(k, v).second, "save_checkpoint: tensor '", k, "' is both in the module and in the extra tensors");
  }
  safetensors::save(path, tensors, meta.to_metadata());
}

WeightChoice parse_weight_choice(const std::string& text) {
  if (text == "auto") return WeightChoice::automatic;
  if (text == "ema") return WeightChoice::ema;
  if (text == "raw") return WeightChoice::raw;
  throw Error(str("unknown weights '", text, "'"),
              "use --weights auto (the EMA weights when the file has them), ema or raw");
}

std::string chosen_weights(WeightChoice choice, const CheckpointMeta& meta) {
  return choice != WeightChoice::raw && meta.extra.count("ema_decay") ? "ema" : "raw";
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  return CheckpointMeta::from_metadata(safetensors::read_header(path).metadata, path);
}

CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& module, const LoadOptions& options) {
  CheckpointMeta meta = read_checkpoint_meta(path);
  SEQGAN_CHECK_HINT(options.expected_kind.empty() || meta.kind == options.expected_kind,
                    "pass the checkpoint of the right model", path, ": expected a '", options.expected_kind,
                    "' checkpoint, found kind '", meta.kind, "'");
  auto file = safetensors::load(path).tensors;
  const bool has_ema = meta.extra.count("ema_decay") > 0;
  SEQGAN_CHECK_HINT(has_ema || options.weights != WeightChoice::ema,
                    "load its raw weights (--weights raw), or train with an EMA (*.ema_decay > 0)", path,
                    " holds no EMA weights: it was trained without an exponential moving average");
  const std::string prefix = kEmaPrefix;
  safetensors::TensorMap chosen;
  const bool ema = has_ema && options.weights != WeightChoice::raw;
  for (auto& [k, v] : file) {
    const bool is_ema = has_ema && starts_with(k, prefix);
    if (is_ema == ema) chosen.emplace(ema ? k.substr(prefix.size()) : k, std::move(v));
  }
  load_state_dict(module, chosen, options, path);
  return meta;
}

}  // namespace seqgan
