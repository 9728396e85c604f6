// `seqgan info` and `seqgan help-config`: the resolved configuration, model sizes, the registry.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "losses/discriminator.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "transformer/transformer.h"

namespace seqgan::cli {
namespace {

using json = nlohmann::ordered_json;

// Parameter counts per model part, from the models built with this config.
json parameter_counts(const Config& config) {
  json out = json::object();
  torch::NoGradGuard ng;
  const int c = config.data.channels;
  TokenizerConfig base = config.tokenizer;
  base.decoder_attn_pairs = 0;
  base.decoder_extra_res_blocks = 0;
  Tokenizer t(base, config.quantizer, c);
  out["tokenizer_phase1"] = count_parameters(*t);
  out["tokenizer_phase1_parts"] = {{"encoder", count_parameters(*t, "encoder.")},
                                   {"decoder", count_parameters(*t, "decoder.")},
                                   {"codebook", count_parameters(*t, "quantizer.")}};
  t->decoder->add_attention(config.phase2.attn_pairs, base);
  out["tokenizer_phase2"] = count_parameters(*t);
  TokenizerConfig conv2 = base, attn2 = base;
  conv2.decoder_extra_res_blocks = 2;
  attn2.decoder_attn_pairs = 2;
  out["tokenizer_variants"] = {{"conv_x2", count_parameters(*Tokenizer(conv2, config.quantizer, c))},
                               {"attention_x2", count_parameters(*Tokenizer(attn2, config.quantizer, c))}};
  out["discriminator"] = count_parameters(*Discriminator(config.discriminator, c, config.data.resolution));
  TokenSpace space;
  space.codebook_size = config.tokenizer.codebook_size;
  space.length = transformer_seq_len(config);
  space.num_classes = config.transformer.num_classes;
  out["ar"] = count_parameters(*Transformer(config.transformer, space, true));
  out["nar"] = count_parameters(*Transformer(config.transformer, space, false));
  return out;
}

int run_info(const Args& args) {
  const Config config = load_config(args);
  json out;
  out["preset"] = config.preset;
  out["config"] = json::parse(config_to_json(config));
  out["derived"] = {{"downsample_factor", tokenizer_downsample_factor(config.tokenizer)},
                    {"latent_size", latent_size(config)},
                    {"tokens_per_image", transformer_seq_len(config)},
                    {"transformer_vocab", transformer_vocab_size(config)}};
  out["parameters"] = parameter_counts(config);
  if (args.flag("--json")) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "preset: " << config.preset << "\nmachine: " << machine_summary() << "\n";
  for (const auto& [k, v] : out["derived"].items()) std::cout << k << ": " << v.dump() << "\n";
  std::cout << "parameters:\n";
  for (const auto& [k, v] : out["parameters"].items()) {
    if (!v.is_object()) {
      std::cout << "  " << k << ": " << v.get<int64_t>() << "\n";
      continue;
    }
    for (const auto& [k2, v2] : v.items()) std::cout << "  " << k << "." << k2 << ": " << v2.get<int64_t>() << "\n";
  }
  std::cout << "(`seqgan info --json` prints the whole resolved configuration)\n";
  return 0;
}

int run_help_config(const Args& args) {
  const Config config = load_config(args);
  std::cout << "configuration keys (values of preset '" << config.preset
            << "'); set them with --set KEY=VALUE or in a JSON file given to --config\n\n";
  std::string section;
  for (const auto& f : config_fields(config)) {
    const std::string s = f.path.substr(0, f.path.find('.'));
    if (s != section && f.path.find('.') != std::string::npos) {
      std::cout << "\n[" << s << "]\n";
      section = s;
    }
    std::cout << "  " << f.path << " = " << f.value << "  (" << f.type;
    if (!f.allowed.empty()) std::cout << ", " << f.allowed;
    std::cout << ")\n      " << f.help << "\n";
  }
  return 0;
}

}  // namespace

Command info_command() {
  Command c;
  c.info.name = "info";
  c.info.summary = "Print the resolved configuration, derived sizes and parameter counts of a preset";
  c.config_options("paper");
  c.flag("--json", "print JSON (config, derived sizes, parameters)");
  c.run = run_info;
  return c;
}

Command help_config_command() {
  Command c;
  c.info.name = "help-config";
  c.info.summary = "List every configuration key with its value, type, allowed range and meaning";
  c.config_options("paper");
  c.run = run_help_config;
  return c;
}

}  // namespace seqgan::cli
