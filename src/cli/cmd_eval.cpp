// `seqgan evaluate` and `seqgan fid-stats`: metrics, each reported with what it measured (the
// feature network and the hash of its weights, each side's source, count and preprocessing).
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "eval/evaluate.h"
#include "eval/psnr.h"
#include "eval/ssim.h"
#include "io/hash.h"
#include "report/html.h"
#include "report/scores_json.h"
#include "seqgan/image.h"
#include "seqgan/log.h"
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

// What a result was measured with, beside the numbers: the network and the hash of its weights,
// each side's source, file hash, preprocessing and count, and warnings where the sides differ.
struct Provenance {
  json j;
  std::string text;
  std::vector<std::string> warnings;
};

json side_json(const Measured& m) {
  json j{{"source", m.source}, {"count", m.count}, {"preprocess", m.preprocess}, {"network", m.network},
         {"network_sha256", m.network_sha256}, {"resize", m.resize}};
  if (!m.file_sha256.empty()) j["file_sha256"] = m.file_sha256;
  return j;
}

std::string side_text(const char* label, const Measured& m) {
  std::ostringstream os;
  os << "  " << label << ": " << m.source << " (" << m.count << " images";
  if (!m.file_sha256.empty()) os << ", file sha256:" << short_hash(m.file_sha256);
  os << ")\n      preprocessing: " << (m.preprocess.empty() ? "unknown" : m.preprocess) << "\n";
  return os.str();
}

Provenance provenance(const std::string& network, const std::string& sha, const std::string& resize, const Measured* ref,
                      const Measured& gen, const std::string& taps) {
  Provenance p;
  p.j = {{"network", network}, {"network_sha256", sha}, {"resize", resize}, {"taps", taps}, {"gen", side_json(gen)}};
  std::ostringstream os;
  os << "  network: " << (network.empty() ? "unknown (stored statistics of a foreign file)" : network);
  if (!sha.empty()) os << ", weights sha256:" << short_hash(sha);
  os << "\n      resize: " << (resize.empty() ? "unknown" : resize) << "\n      taps: " << taps << "\n";
  if (ref) {
    p.j["ref"] = side_json(*ref);
    os << side_text("ref", *ref);
    p.warnings = provenance_mismatches(*ref, gen);
  }
  os << side_text("gen", gen);
  p.j["warnings"] = p.warnings;
  p.text = os.str();
  return p;
}

// The network both sides were measured with (the generated side's, else the reference's).
const Measured& measured_side(const Measured* ref, const Measured& gen) {
  return !gen.network.empty() || !ref ? gen : *ref;
}

void print(const Args& args, json j, const std::string& result, const Provenance& p) {
  for (const auto& w : p.warnings) log_warn(w);
  if (args.flag("--json")) {
    j.update(p.j);
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << result << p.text;
  }
}

// Opens the evaluation network when first needed (stored features and statistics need none).
struct LazyNetwork {
  const Config& config;
  std::unique_ptr<EvalNetwork> net;
  EvalNetwork& operator()() {
    if (!net) net = std::make_unique<EvalNetwork>(config.eval, to_device(resolve_device(config.device)));
    return *net;
  }
  std::function<EvalNetwork&()> fn() {
    return [this]() -> EvalNetwork& { return (*this)(); };
  }
};

MeasureOptions measure_options(const Args& args, const Config& config, bool per_image, bool spatial) {
  MeasureOptions o;
  o.per_image = per_image;
  o.spatial = spatial;
  o.count = count_option(args, config);
  o.batch = batch_option(args, config);
  return o;
}

void require(const Args& args, const char* option, const char* what) {
  if (!args.has(option) || args.get(option).empty()) throw UsageError(str("pass ", option, " ", what));
}

constexpr const char* kSourceHelp = "SOURCE (data:train|test, a folder of images, an .npz batch or features, or statistics)";

ManifoldOptions manifold_options(const Args& args) {
  ManifoldOptions o;
  if (!args.get("--k").empty()) o.k = static_cast<int>(args.get_int("--k"));
  return o;
}

using report::fixed;

int run_distance(const Args& args, const Config& config, bool spatial) {
  require(args, "--gen", kSourceHelp);
  LazyNetwork net{config, nullptr};
  const auto opts = measure_options(args, config, false, spatial);
  const Measured ref = measure(args.get("--ref"), config.data, net.fn(), opts, "features (ref)");
  const Measured gen = measure(args.get("--gen"), config.data, net.fn(), opts, "features (gen)");
  const FeatureStats a = spatial ? ref.spatial_stats() : ref.pool_stats();
  const FeatureStats b = spatial ? gen.spatial_stats() : gen.pool_stats();
  const double fd = a.network.empty() || b.network.empty() ? frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
                                                           : frechet_distance(a, b);
  const char* name = spatial ? "sFID" : "FID";
  const Measured& side = measured_side(&ref, gen);
  const Provenance p = provenance(side.network, side.network_sha256, side.resize, &ref, gen,
                                  spatial ? "spatial features (sFID)" : "pooled features");
  print(args, {{"metric", spatial ? "sfid" : "fid"}, {"frechet_distance", fd}}, str(name, ": ", fixed(fd, 3), "\n"), p);
  return 0;
}

int run_pr(const Args& args, const Config& config) {
  require(args, "--gen", kSourceHelp);
  LazyNetwork net{config, nullptr};
  const auto opts = measure_options(args, config, true, false);
  const Measured ref = measure(args.get("--ref"), config.data, net.fn(), opts, "features (ref)");
  const Measured gen = measure(args.get("--gen"), config.data, net.fn(), opts, "features (gen)");
  const ManifoldOptions mo = manifold_options(args);
  const PrecisionRecall pr = precision_recall(ref.set.features, gen.set.features, mo);
  const Measured& side = measured_side(&ref, gen);
  const Provenance p = provenance(side.network, side.network_sha256, side.resize, &ref, gen, "pooled features");
  print(args, {{"metric", "pr"}, {"precision", pr.precision}, {"recall", pr.recall}, {"k", mo.k}},
        str("precision: ", fixed(pr.precision, 4), "\nrecall: ", fixed(pr.recall, 4), " (k = ", mo.k, ")\n"), p);
  return 0;
}

int run_is(const Args& args, const Config& config) {
  require(args, "--gen", "SOURCE (a folder of images, data:train|test or an .npz batch)");
  LazyNetwork net{config, nullptr};
  const Measured gen = measure(args.get("--gen"), config.data, net.fn(), measure_options(args, config, true, false), "features");
  // Stored features go through the network's logit layer; they must come from that network.
  check_network(gen, net());
  const at::Tensor logits = gen.set.logits.defined() ? gen.set.logits : net().logits(gen.set.features);
  const int splits = args.get("--splits").empty() ? config.eval.is_splits : static_cast<int>(args.get_int("--splits"));
  const InceptionScore is = inception_score(logits, splits);
  const Provenance p = provenance(gen.network, gen.network_sha256, gen.resize, nullptr, gen, "logits");
  print(args, {{"metric", "is"}, {"inception_score", is.mean}, {"std", is.std}, {"splits", is.splits}},
        str("IS: ", fixed(is.mean, 3), " +- ", fixed(is.std, 3), " (", is.splits, " splits)\n"), p);
  return 0;
}

// ADM's evaluator: IS on the logits of the pool features (parts of 5000), FID, sFID, and
// precision/recall (k = 3) against a reference batch.
int run_adm(const Args& args, const Config& config) {
  require(args, "--gen", "SAMPLES (an .npz sample batch or a folder of images)");
  const ManifoldOptions mo = manifold_options(args);
  const AdmEvaluation e =
      evaluate_adm(config, args.get("--ref"), args.get("--gen"), measure_options(args, config, true, true), mo);
  const InceptionScore& is = e.scores.inception;
  const double fid = e.scores.fid, sfid = e.scores.sfid;
  const PrecisionRecall& pr = e.scores.pr;
  const EvalNetwork& n = *e.net;
  const Provenance p = provenance(n.name(), n.weights_sha256(), n.resize(), &e.ref, e.gen,
                                  str("pool features (FID, IS, precision/recall), ", n.spatial(), " (sFID)"));
  json j{{"metric", "adm"}, {"inception_score", is.mean}, {"is_parts", is.splits}, {"fid", fid}, {"sfid", sfid},
         {"precision", pr.precision}, {"recall", pr.recall}, {"k", mo.k}};
  std::ostringstream os;
  os << "Inception Score: " << fixed(is.mean, 3) << " (" << is.splits << (is.splits == 1 ? " part" : " parts")
     << " of up to 5000)\nFID: " << fixed(fid, 3) << "\nsFID: " << fixed(sfid, 3) << "\nPrecision: " << fixed(pr.precision, 4)
     << "\nRecall: " << fixed(pr.recall, 4) << "\n";
  print(args, j, os.str(), p);
  return 0;
}

// Paired image metrics: every image of --ref against the file of the same relative name in --gen.
int run_paired(const Args& args, const Config& config, const std::string& metric) {
  require(args, "--ref", "DIR (reference images)");
  require(args, "--gen", "DIR (images with the same file names)");
  const std::string ref_dir = args.get("--ref"), gen_dir = args.get("--gen");
  for (const auto& d : {ref_dir, gen_dir})
    SEQGAN_CHECK_HINT(std::filesystem::is_directory(d), "give two folders of images with the same file names", metric,
                      " compares paired images: '", d, "' is not a folder");
  const ImageFolder ref(ref_dir);
  SEQGAN_CHECK_HINT(ref.size() > 0, "point --ref at a folder of images", ref_dir, " holds no images");
  std::vector<std::string> missing, partners;  // partners[i]: the generated file of ref.path(i)
  for (int64_t i = 0; i < ref.size(); ++i) {
    const auto rel = std::filesystem::relative(ref.path(i), ref_dir);
    partners.push_back((std::filesystem::path(gen_dir) / rel).string());
    if (!std::filesystem::is_regular_file(partners.back())) missing.push_back(rel.string());
  }
  if (!missing.empty())
    throw Error(str(gen_dir, " lacks ", missing.size(), " of the ", ref.size(), " images of ", ref_dir, " (first: ", missing.front(), ")"),
                "pair the folders: every reference image needs a generated image of the same relative name");
  const auto device = to_device(resolve_device(config.device));
  Lpips lpips{nullptr};
  if (metric == "lpips") lpips = load_lpips(config.eval.lpips_weights, device);
  const int64_t count = args.get("--count").empty() ? ref.size() : std::min<int64_t>(ref.size(), args.get_int("--count"));
  const int64_t batch = batch_option(args, config);
  double sum = 0;
  Progress progress(metric, count, 1.0);
  for (int64_t start = 0; start < count; start += batch) {
    const int64_t end = std::min(count, start + batch);
    std::vector<at::Tensor> xs, ys;
    for (int64_t i = start; i < end; ++i) {
      const Image a = read_image(ref.path(i), 3), b = read_image(partners[static_cast<size_t>(i)], 3);
      SEQGAN_CHECK_HINT(a.width == b.width && a.height == b.height, "compare images of the same size", ref.path(i), ": ",
                        a.width, "x", a.height, ", but ", partners[static_cast<size_t>(i)], ": ", b.width, "x", b.height);
      xs.push_back(image_to_tensor(a));
      ys.push_back(image_to_tensor(b));
    }
    // Images of different sizes go one at a time; equal sizes as one batch.
    bool same = true;
    for (const auto& x : xs) same = same && x.sizes() == xs.front().sizes();
    std::vector<std::pair<at::Tensor, at::Tensor>> groups;
    if (same) groups.emplace_back(at::stack(xs), at::stack(ys));
    else for (size_t k = 0; k < xs.size(); ++k) groups.emplace_back(xs[k].unsqueeze(0), ys[k].unsqueeze(0));
    for (const auto& [x, y] : groups) {
      if (metric == "ssim") sum += ssim(to_pixels(x), to_pixels(y)).sum().item<double>();
      else if (metric == "psnr") sum += psnr(x, y).sum().item<double>();
      else {
        torch::NoGradGuard ng;
        sum += lpips->forward(x.to(device), y.to(device)).sum().item<double>();
      }
    }
    progress.update(end);
    throw_if_stopped(metric);
  }
  progress.finish();
  const double mean = sum / static_cast<double>(count);
  json j{{"metric", metric}, {metric, mean}, {"count", count}, {"ref", ref_dir}, {"gen", gen_dir}};
  std::string how = metric == "ssim" ? "Gaussian window 11, sigma 1.5, population covariance, data range 255, per channel"
                    : metric == "psnr" ? "10 log10(255^2 / MSE) per image on the 8-bit pixels"
                                       : "VGG16 with the lpips package's v0.1 linear layers";
  if (metric == "lpips") {
    j["lpips_weights"] = config.eval.lpips_weights;
    j["lpips_sha256"] = sha256_file(config.eval.lpips_weights);
    how += str(", weights ", config.eval.lpips_weights, " sha256:", short_hash(j["lpips_sha256"].get<std::string>()));
  }
  j["how"] = how;
  if (args.flag("--json")) std::cout << j.dump(2) << "\n";
  else
    std::cout << (metric == "ssim" ? "SSIM: " : metric == "psnr" ? "PSNR: " : "LPIPS: ") << fixed(mean, 4)
              << (metric == "psnr" ? " dB" : "") << " (mean of " << count << " pairs)\n  " << how << "\n  ref: " << ref_dir
              << "\n  gen: " << gen_dir << "\n";
  return 0;
}

int run_tokenizer_metric(const Args& args, const Config& config, const std::string& metric) {
  if (!args.has("--tokenizer")) throw UsageError("pass --tokenizer RUN/tokenizer.safetensors");
  const auto device = to_device(resolve_device(config.device));
  auto tok = load_tokenizer(args.get("--tokenizer"), device, weights_of(args));
  const DataConfig data = model_data(tok.config, args, args.get("--tokenizer"));
  const std::string spec = args.get("--images").empty() ? "data:" + args.get("--split") : args.get("--images");
  const ImageSource source = open_image_source(spec, data);
  std::unique_ptr<EvalNetwork> net;
  if (metric == "rfid" || metric == "tokenizer") net = std::make_unique<EvalNetwork>(config.eval, device);
  Lpips lpips{nullptr};
  if (metric == "tokenizer" && !config.eval.lpips_weights.empty()) lpips = load_lpips(config.eval.lpips_weights, device);
  const int64_t count = args.get("--count").empty() ? -1 : args.get_int("--count");
  const TokenizerScores s = score_tokenizer(tok.model, source, count, batch_option(args, config), net.get(), nullptr,
                                            lpips.is_empty() ? nullptr : lpips.get());
  SkippedFiles(source.data).report();
  const int64_t K = s.histogram.size(0);
  json j{{"metric", metric}, {"tokenizer", args.get("--tokenizer")}, {"phase", tok.phase}, {"step", tok.step},
         {"weights", tok.weights}, {"source", source.name}, {"preprocess", source.preprocess}, {"count", s.count},
         {"ssim", s.ssim}};
  j.update(report::tokenizer_scores_json(s));
  if (metric == "usage") {
    std::vector<int64_t> hist(s.histogram.data_ptr<int64_t>(), s.histogram.data_ptr<int64_t>() + K);
    j["histogram"] = hist;
  }
  std::ostringstream os;
  os << std::fixed << std::setprecision(3);
  if (net) {
    j["network"] = net->name();
    j["network_sha256"] = net->weights_sha256();
    j["resize"] = net->resize();
    os << "rFID: " << s.rfid << "\n";
  }
  os << "PSNR: " << s.psnr << " dB\nSSIM: " << std::setprecision(4) << s.ssim << "\n" << std::setprecision(3);
  if (metric == "tokenizer") {
    if (lpips) {
      j["lpips"] = s.lpips;
      j["lpips_sha256"] = sha256_file(config.eval.lpips_weights);
      os << "LPIPS: " << std::setprecision(4) << s.lpips << std::setprecision(3) << " (vgg, v0.1; weights sha256:"
         << short_hash(j["lpips_sha256"].get<std::string>()) << ")\n";
    } else {
      j["lpips"] = nullptr;
      os << "LPIPS: not measured (set eval.lpips_weights to the file of tools/convert_lpips.py)\n";
    }
  }
  os << "codebook usage: " << 100 * s.usage << "% (" << s.codes_used << " of " << K << " codes), perplexity "
     << s.perplexity << "\n  tokenizer: " << args.get("--tokenizer") << " (phase " << tok.phase << ", step " << tok.step
     << ", " << tok.weights << " weights)\n";
  if (net) os << "  network: " << net->name() << ", weights sha256:" << short_hash(net->weights_sha256()) << "\n      resize: " << net->resize() << "\n";
  os << "  images: " << s.count << " of " << source.name << "\n      preprocessing: " << source.preprocess << "\n";
  if (args.flag("--json")) std::cout << j.dump(2) << "\n";
  else std::cout << os.str();
  return 0;
}

int run_evaluate(const Args& args) {
  const Config config = load_config(args);
  install_stop_handlers();
  const std::string metric = args.positionals().at(0);
  if (metric == "fid") return run_distance(args, config, false);
  if (metric == "sfid") return run_distance(args, config, true);
  if (metric == "is") return run_is(args, config);
  if (metric == "pr") return run_pr(args, config);
  if (metric == "adm") return run_adm(args, config);
  if (metric == "ssim" || metric == "lpips" || (metric == "psnr" && !args.has("--tokenizer")))
    return run_paired(args, config, metric);
  if (metric == "rfid" || metric == "usage" || metric == "psnr" || metric == "tokenizer")
    return run_tokenizer_metric(args, config, metric);
  throw UsageError("unknown metric '" + metric + "': use adm, fid, sfid, is, pr, ssim, psnr, lpips, tokenizer, rfid or usage");
}

int run_fid_stats(const Args& args) {
  Config config = load_config(args);
  install_stop_handlers();
  const std::string out = args.get("--out");
  if (out.empty()) throw UsageError("pass --out FILE.safetensors (seqgan's layout) or FILE.npz (ADM's layout)");
  const bool adm = out.size() > 4 && out.compare(out.size() - 4, 4, ".npz") == 0;
  if (adm && config.eval.feature_network == "inception" && !args.flag("--keep-resize")) config.eval.inception_resize = "adm";
  EvalNetwork net(config.eval, to_device(resolve_device(config.device)));
  const ImageSource source = open_image_source(args.positionals().at(0), config.data);
  // ADM's layout keeps the images the network saw: taken during the one pass over them.
  at::Tensor images;
  const bool keep_images = adm && !args.flag("--no-images");
  const FeatureSet set = extract_features(net, source, count_option(args, config), batch_option(args, config), "features",
                                          keep_images ? &images : nullptr);
  SkippedFiles(source.data).report();
  if (!adm) {
    const FeatureStats stats = feature_stats(net, set, source.name, source.preprocess);
    save_feature_stats(out, stats);
    std::cout << "wrote statistics of " << stats.count << " images of " << source.name << " [" << stats.network << "] to "
              << out << "\n";
    return 0;
  }
  Measured m;
  m.spec = args.positionals().at(0);
  m.source = source.name;
  m.preprocess = source.preprocess;
  m.measured_with(net);
  m.set = set;
  m.count = set.features.size(0);
  save_adm_npz(out, m, images, args.flag("--features"));
  std::cout << "wrote ADM statistics (mu, sigma, mu_s, sigma_s" << (images.defined() ? ", arr_0" : "")
            << (args.flag("--features") ? ", features, spatial" : "") << ") of " << m.count << " images of " << source.name
            << " [" << m.network << ", " << m.resize << "] to " << out << "\n";
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
  c.info.brief = "Measure samples or a tokenizer: adm, fid, sfid, is, pr, ssim, psnr, lpips, tokenizer";
  c.info.summary =
      "Measure generated images or a tokenizer; every result names its network (and weight hash), sources and preprocessing\n"
      "  adm    --ref REF --gen SAMPLES   ADM's evaluator: IS, FID, sFID, precision, recall (InceptionV3 inputs resized as ADM's)\n"
      "  fid    --ref SOURCE --gen SOURCE Frechet distance of the pooled features\n"
      "  sfid   --ref SOURCE --gen SOURCE Frechet distance of the spatial features (mixed_6/conv, 7 channels)\n"
      "  is     --gen SOURCE              Inception Score (eval.is_splits splits)\n"
      "  pr     --ref SOURCE --gen SOURCE improved precision and recall (k = 3)\n"
      "  ssim | psnr | lpips --ref DIR --gen DIR   paired images (same file names), mean over pairs\n"
      "  tokenizer --tokenizer FILE       PSNR, SSIM, LPIPS, codebook usage, perplexity and rFID of reconstructions\n"
      "  rfid | usage | psnr --tokenizer FILE   one tokenizer metric (usage: with the histogram)\n"
      "SOURCE: data:train, data:test, a folder of images, an .npz (ADM batch: arr_0 uint8 [N, H, W, 3], mu, sigma,\n"
      "mu_s, sigma_s; or `features` [N, D] and `spatial` [N, S]), or a file from `seqgan fid-stats`.\n"
      "The feature network is eval.feature_network / eval.feature_weights; LPIPS is eval.lpips_weights.";
  c.config_options("fmnist");
  c.positional("METRIC");
  c.option("--ref", "SOURCE", "data:test", "reference images, features or statistics (adm, fid, sfid, pr; a folder for ssim, psnr, lpips)");
  c.option("--gen", "SOURCE", "", "images or features to measure (adm, fid, sfid, is, pr; a folder for ssim, psnr, lpips)");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors (tokenizer, rfid, usage, psnr)");
  c.weights_option("--weights", "the tokenizer");
  c.option("--split", "SPLIT", "test", "data split the tokenizer reconstructs");
  c.option("--images", "DIR", "", "a folder of images the tokenizer reconstructs instead of the split");
  c.option("--splits", "N", "", "IS splits (default: eval.is_splits)");
  c.option("--k", "N", "3", "neighbourhood size of precision and recall (adm, pr)");
  common_options(c);
  c.run = run_evaluate;
  return c;
}

Command fid_stats_command() {
  Command c;
  c.info.name = "fid-stats";
  c.info.brief = "Write feature statistics of images: .safetensors, or .npz in ADM's reference-batch layout";
  c.info.summary =
      "Write the feature statistics of an image source: FILE.safetensors (mu, sigma; for `evaluate fid`) or FILE.npz in\n"
      "ADM's layout (mu, sigma, mu_s, sigma_s, the images as arr_0 uint8 [N, H, W, 3], and seqgan's provenance), a\n"
      "reference batch for `evaluate adm`. For .npz the InceptionV3 resizes as ADM's evaluator does.";
  c.config_options("fmnist");
  c.positional("SOURCE");
  c.option("--out", "FILE", "", "statistics file (.safetensors or .npz)");
  c.flag("--no-images", "ADM layout: leave arr_0 out (statistics only; precision/recall then need `features`)");
  c.flag("--features", "ADM layout: also store the per-image `features` and `spatial` (float32)");
  c.flag("--keep-resize", "ADM layout: keep eval.inception_resize instead of ADM's resize");
  common_options(c);
  c.run = run_fid_stats;
  return c;
}

}  // namespace seqgan::cli
