// Module checkpoints: a module's parameters and buffers in a safetensors file whose
// __metadata__ says what it is (format "seqgan", format_version, kind, config, step).
// Loading is strict: every difference between file and module is reported at once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "seqgan/safetensors.h"

namespace torch::nn {
class Module;
}

namespace seqgan {

inline constexpr const char* kCheckpointFormat = "seqgan";
inline constexpr int kCheckpointFormatVersion = 1;

struct CheckpointMeta {
  std::string kind;         // "tokenizer", "transformer", "classifier", ...
  std::string config_json;  // the resolved config, as JSON text
  int64_t step = 0;
  std::map<std::string, std::string> extra;  // any other metadata, kept as is

  // Adds format and format_version. Throws when kind is empty, config_json is not JSON, or an
  // extra key collides with one of the keys above.
  safetensors::Metadata to_metadata() const;
  // Throws unless format is "seqgan" and format_version is one this build reads. `source`
  // names the file in errors.
  static CheckpointMeta from_metadata(const safetensors::Metadata& metadata, const std::string& source = "<memory>");
};

// Parameters and buffers by dotted name ("encoder.conv_in.weight"), as register_module and
// register_parameter/register_buffer named them. Undefined tensors are skipped. The tensors
// share storage with the module.
safetensors::TensorMap state_dict(const torch::nn::Module& module);

// Model files of runs trained with an exponential moving average (`*.ema_decay` > 0) hold the
// average under "ema.NAME" beside the raw weights, and "ema_decay" in their metadata.
inline constexpr const char* kEmaPrefix = "ema.";
enum class WeightChoice {
  automatic,  // the EMA weights when the file has them, else the raw ones
  ema,        // the EMA weights; an error when the file has none
  raw,        // the weights as the optimiser left them
};
// "auto", "ema" or "raw"; anything else is an error naming the choices.
WeightChoice parse_weight_choice(const std::string& text);
// "ema" or "raw": what `choice` loads from a file with the given metadata.
std::string chosen_weights(WeightChoice choice, const CheckpointMeta& meta);

struct LoadOptions {
  // Empty: every tensor of the module and of the file takes part. Otherwise only keys starting
  // with one of these prefixes (after `rename`), on both sides; within them loading is strict.
  std::vector<std::string> prefixes;
  // File key prefix -> module key prefix, applied (first match) before anything else, e.g.
  // {"model.", ""} strips "model." from the file's keys.
  std::vector<std::pair<std::string, std::string>> rename;
  // When false, a dtype difference is an error; when true, values are converted to the
  // module's dtype.
  bool convert_dtype = false;
  // When set, the checkpoint's kind must equal it.
  std::string expected_kind;
  // load_checkpoint: the raw or the EMA weights of a model file (see WeightChoice).
  WeightChoice weights = WeightChoice::automatic;
};

// Copies `tensors` into the module's parameters and buffers under NoGradGuard, keeping the
// module's devices and dtypes. Throws one error listing every missing, unexpected and
// mismatched tensor; nothing is copied then. Works for any tensors, e.g. safetensors::load of
// converted Python weights.
void load_state_dict(torch::nn::Module& module, const safetensors::TensorMap& tensors,
                     const LoadOptions& options = {}, const std::string& source = "<memory>");

// Saves state_dict(module) and `extra` (e.g. the EMA weights under kEmaPrefix) with
// meta.to_metadata(), atomically (see safetensors::save).
void save_checkpoint(const std::string& path, const torch::nn::Module& module, const CheckpointMeta& meta,
                     const safetensors::TensorMap& extra = {});

// Reads only the metadata; the tensors stay on disk.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Checks the metadata (format, version, options.expected_kind) before reading any tensor data,
// then load_state_dict. Returns the metadata.
CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& module, const LoadOptions& options = {});

}  // namespace seqgan
