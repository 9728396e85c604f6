// `seqgan evaluate rfid|fid|is|usage|psnr` and `seqgan fid-stats`: metrics, each reported with
// the feature network that produced it.
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "eval/evaluate.h"
#include "seqgan/error.h"
#include "seqgan/runtime.h"
#include "train/run.h"

namespace seqgan::cli {
namespace {

using nlohmann::json;

int64_t count_option(const Args& args, const Config& config) {
  return args.get("--count").empty() ? config.eval.num_samples : args.get_int("--count");
}

int64_t batch_option(const Args& args, const Config& config) {
  return args.get("--batch-size").empty() ? config.eval.batch_size : args.get_int("--batch-size");
}

json network_json(const FeatureStats& s) {
  return {{"network", s.network}, {"network_weights", s.weights}, {"resize", s.resize}};
}

json side_json(const FeatureStats& s) { return {{"source", s.source}, {"count", s.count}}; }

// A stats file, or the statistics of an image source measured now.
FeatureStats stats_of(const std::string& spec, const Config& config, const Args& args, std::unique_ptr<EvalNetwork>& net,
                      const std::string& label) {
  if (is_feature_stats_file(spec)) return load_feature_stats(spec);
  if (!net) net = std::make_unique<EvalNetwork>(config.eval, to_device(resolve_device(config.device)));
  const ImageSource source = open_image_source(spec, config.data);
  const FeatureSet set = extract_features(*net, source, count_option(args, config), batch_option(args, config), label);
  SkippedFiles(source.data).report();
  return feature_stats(*net, set, source.name);
}

void print(const Args& args, const json& j, const std::string& text) {
  if (args.flag("--json")) std::cout << j.dump(2) << "\n";
  else std::cout << text;
}

int run_fid(const Args& args, const Config& config) {
  if (!args.has("--gen")) throw UsageError("pass --gen SOURCE (a folder of images, data:train|test, or a fid-stats file)");
  std::unique_ptr<EvalNetwork> net;
  const FeatureStats ref = stats_of(args.get("--ref"), config, args, net, "features (ref)");
  const FeatureStats gen = stats_of(args.get("--gen"), config, args, net, "features (gen)");
  const double fd = frechet_distance(ref, gen);
  json j = network_json(ref);
  j["metric"] = "fid";
  j["frechet_distance"] = fd;
  j["ref"] = side_json(ref);
  j["gen"] = side_json(gen);
  std::ostringstream os;
  os << std::fixed << std::setprecision(3) << "FID [" << ref.network << "]: " << fd << "\n  ref: " << ref.source << " ("
     << ref.count << " images)\n  gen: " << gen.source << " (" << gen.count << " images)\n";
  print(args, j, os.str());
  return 0;
}

int run_is(const Args& args, const Config& config) {
  if (!args.has("--gen")) throw UsageError("pass --gen SOURCE (a folder of images or data:train|test)");
  EvalNetwork net(config.eval, to_device(resolve_device(config.device)));
  const ImageSource source = open_image_source(args.get("--gen"), config.data);
  const FeatureSet set = extract_features(net, source, count_option(args, config), batch_option(args, config), "features");
  SkippedFiles(source.data).report();
  const int splits = args.get("--splits").empty() ? config.eval.is_splits : static_cast<int>(args.get_int("--splits"));
  const InceptionScore is = inception_score(set.logits, splits);
  json j{{"metric", "is"}, {"inception_score", is.mean}, {"std", is.std}, {"splits", is.splits},
         {"network", net.name()}, {"network_weights", net.weights()}, {"resize", net.resize()},
         {"gen", {{"source", source.name}, {"count", set.logits.size(0)}}}};
  std::ostringstream os;
  os << std::fixed << std::setprecision(3) << "IS [" << net.name() << "]: " << is.mean << " +- " << is.std << " ("
     << is.splits << " splits of " << set.logits.size(0) << " images of " << source.name << ")\n";
  print(args, j, os.str());
  return 0;
}

int run_tokenizer_metric(const Args& args, const Config& config, const std::string& metric) {
  if (!args.has("--tokenizer")) throw UsageError("pass --tokenizer RUN/tokenizer.safetensors");
  const auto device = to_device(resolve_device(config.device));
  auto tok = load_tokenizer(args.get("--tokenizer"), device, weights_of(args));
  const ImageSource source = open_image_source("data:" + args.get("--split"), model_data(tok.config, args, args.get("--tokenizer")));
  std::unique_ptr<EvalNetwork> net;
  if (metric == "rfid") net = std::make_unique<EvalNetwork>(config.eval, device);
  const int64_t count = args.get("--count").empty() ? -1 : args.get_int("--count");
  const TokenizerScores s = score_tokenizer(tok.model, source, count, batch_option(args, config), net.get());
  SkippedFiles(source.data).report();
  const int64_t K = s.histogram.size(0);
  json j{{"metric", metric}, {"tokenizer", args.get("--tokenizer")}, {"phase", tok.phase}, {"step", tok.step},
         {"source", source.name}, {"count", s.count}, {"psnr_db", s.psnr}, {"codebook_usage", s.usage},
         {"codes_used", s.codes_used}, {"codebook_size", K}, {"perplexity", s.perplexity}};
  if (metric == "usage") {
    std::vector<int64_t> hist(s.histogram.data_ptr<int64_t>(), s.histogram.data_ptr<int64_t>() + K);
    j["histogram"] = hist;
  }
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  if (net) {
    j["rfid"] = s.rfid;
    j.update(network_json(s.real));
    os << "rFID [" << net->name() << "]: " << s.rfid << "\n";
  }
  os << "PSNR: " << s.psnr << " dB\ncodebook usage: " << 100 * s.usage << "% (" << s.codes_used << " of " << K
     << " codes), perplexity " << s.perplexity << "\nmeasured on " << s.count << " images of " << source.name << "\n";
  print(args, j, os.str());
  return 0;
}

int run_evaluate(const Args& args) {
  const Config config = load_config(args);
  install_stop_handlers();
  const std::string metric = args.positionals().at(0);
  if (metric == "fid") return run_fid(args, config);
  if (metric == "is") return run_is(args, config);
  if (metric == "rfid" || metric == "usage" || metric == "psnr") return run_tokenizer_metric(args, config, metric);
  throw UsageError("unknown metric '" + metric + "': use rfid, fid, is, usage or psnr");
}

int run_fid_stats(const Args& args) {
  const Config config = load_config(args);
  install_stop_handlers();
  const std::string out = args.get("--out");
  if (out.empty()) throw UsageError("pass --out FILE.safetensors");
  EvalNetwork net(config.eval, to_device(resolve_device(config.device)));
  const ImageSource source = open_image_source(args.positionals().at(0), config.data);
  const FeatureSet set = extract_features(net, source, count_option(args, config), batch_option(args, config), "features");
  SkippedFiles(source.data).report();
  const FeatureStats stats = feature_stats(net, set, source.name);
  save_feature_stats(out, stats);
  std::cout << "wrote statistics of " << stats.count << " images of " << source.name << " [" << stats.network << "] to "
            << out << "\n";
  return 0;
}

void common_options(Command& c) {
  c.option("--count", "N", "", "images to measure (default: eval.num_samples for image sources; the whole split for a tokenizer; -1: all)");
  c.option("--batch-size", "N", "", "images per forward pass (default: eval.batch_size)");
  c.flag("--json", "print the result as JSON");
}

}  // namespace

Command evaluate_command() {
  Command c;
  c.info.name = "evaluate";
  c.info.brief = "Measure generated images or a tokenizer: fid, is, rfid, usage, psnr";
  c.info.summary =
      "Measure generated images or a tokenizer: fid, is, rfid, usage, psnr (every result names its feature network)\n"
      "  fid   --ref SOURCE --gen SOURCE   Frechet distance of the two feature sets\n"
      "  is    --gen SOURCE                Inception Score (eval.is_splits splits)\n"
      "  rfid  --tokenizer FILE            rFID of inputs vs reconstructions, with PSNR and usage\n"
      "  usage --tokenizer FILE            codebook usage and its histogram\n"
      "  psnr  --tokenizer FILE            reconstruction PSNR\n"
      "SOURCE: data:train, data:test, a folder of images, or a file from `seqgan fid-stats`.\n"
      "The feature network is eval.feature_network / eval.feature_weights of the config.";
  c.config_options("fmnist");
  c.positional("METRIC");
  c.option("--ref", "SOURCE", "data:test", "reference images or statistics (fid)");
  c.option("--gen", "SOURCE", "", "images to measure (fid, is)");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors (rfid, usage, psnr)");
  c.weights_option("--weights", "the tokenizer");
  c.option("--split", "SPLIT", "test", "data split the tokenizer reconstructs (rfid, usage, psnr)");
  c.option("--splits", "N", "", "IS splits (default: eval.is_splits)");
  common_options(c);
  c.run = run_evaluate;
  return c;
}

Command fid_stats_command() {
  Command c;
  c.info.name = "fid-stats";
  c.info.summary = "Write the feature statistics (mu, sigma in float64) of an image source, for `evaluate fid`";
  c.config_options("fmnist");
  c.positional("SOURCE");
  c.option("--out", "FILE", "", "statistics file (.safetensors)");
  common_options(c);
  c.run = run_fid_stats;
  return c;
}

}  // namespace seqgan::cli
