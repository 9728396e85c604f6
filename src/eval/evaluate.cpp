#include "eval/evaluate.h"

#include <filesystem>

#include "eval/classifier.h"
#include "eval/inception.h"
#include "eval/psnr.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "tokenizer/quantizer.h"
#include "data/open.h"

namespace seqgan {
namespace {

namespace F = torch::nn::functional;

at::Tensor load_batch(const ImageSource& source, const Transform& transform, int64_t start, int64_t end) {
  std::vector<at::Tensor> imgs;
  for (int64_t i = start; i < end; ++i) imgs.push_back(image_to_tensor(transform.apply(source.data->load(i).image, 0, 0, i)));
  return at::stack(imgs);
}

int64_t resolve_count(const ImageSource& source, int64_t count) {
  const int64_t size = source.data->size();
  SEQGAN_CHECK_HINT(size > 0, "point the source at images", source.name, " holds no images");
  return count < 0 ? size : std::min(count, size);
}

}  // namespace

EvalNetwork::EvalNetwork(const EvalConfig& config, const torch::Device& device) : device_(device) {
  weights_ = config.feature_weights;
  if (config.feature_network == "inception") {
    net_ = load_feature_network("inception", weights_, device);
    resize_ = "bilinear to 299x299 (align_corners=false)";
  } else {
    SEQGAN_CHECK_HINT(config.feature_network == "classifier", "set eval.feature_network to inception or classifier",
                      "unknown evaluation network '", config.feature_network, "'");
    SEQGAN_CHECK_HINT(!weights_.empty() && std::filesystem::is_regular_file(weights_),
                      "train it with `seqgan train-classifier --role eval` (or set eval.feature_weights)",
                      "the evaluation classifier '", weights_, "' does not exist");
    const auto meta = read_checkpoint_meta(weights_);
    const auto role = meta.extra.find("role");
    SEQGAN_CHECK_HINT(role == meta.extra.end() || role->second != "loss",
                      "train an evaluation network with `seqgan train-classifier --role eval`", weights_,
                      " is the perceptual-loss network; it must not grade its own outputs");
    auto net = load_feature_network("classifier", weights_, device);
    input_size_ = std::dynamic_pointer_cast<Classifier>(net)->arch().resolution;
    resize_ = str("bilinear to ", input_size_, "x", input_size_, " when the images differ");
    net_ = net;
  }
  name_ = net_->description();
}

std::pair<at::Tensor, at::Tensor> EvalNetwork::run(const at::Tensor& x) {
  torch::NoGradGuard ng;
  at::Tensor h = x.to(device_, at::kFloat);
  if (input_size_ > 0 && (h.size(2) != input_size_ || h.size(3) != input_size_))
    h = F::interpolate(h, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{input_size_, input_size_})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  auto out = net_->taps(h, {"features", "logit"});
  return {out.at("features").to(at::kDouble).cpu(), out.at("logit").to(at::kDouble).cpu()};
}

ImageSource open_image_source(const std::string& spec, const DataConfig& data) {
  ImageSource s;
  s.name = spec;
  if (spec.rfind("data:", 0) == 0) {
    const std::string split = spec.substr(5);
    SEQGAN_CHECK_HINT(split == "train" || split == "test", "write data:train or data:test",
                      "unknown split in image source '", spec, "'");
    s.data = open_dataset(data, split);
    s.transform = eval_transform(data);
    s.name = str(spec, " (", s.data->description(), ")");
    return s;
  }
  SEQGAN_CHECK_HINT(std::filesystem::is_directory(spec),
                    "give data:train, data:test, a folder of images, or (where accepted) a fid-stats file",
                    "image source '", spec, "' is neither a data split nor a folder");
  ImageFolderOptions o;
  o.channels = data.channels;
  o.skip_bad = data.skip_bad_files;
  s.data = std::make_shared<ImageFolder>(spec, o);
  s.transform.resolution = data.resolution;
  s.transform.channels = data.channels;
  s.transform.center_crop = true;
  return s;
}

FeatureSet extract_features(EvalNetwork& net, const ImageSource& source, int64_t count, int64_t batch,
                            const std::string& label) {
  count = resolve_count(source, count);
  SEQGAN_CHECK(batch > 0, "batch must be positive, found ", batch);
  const Transform transform(source.transform);
  std::vector<at::Tensor> feats, logits;
  Progress progress(label, count, 1.0);
  for (int64_t start = 0; start < count; start += batch) {
    const int64_t end = std::min(count, start + batch);
    auto [f, l] = net.run(load_batch(source, transform, start, end));
    feats.push_back(f);
    logits.push_back(l);
    progress.update(end);
    throw_if_stopped(label);
  }
  progress.finish();
  return {at::cat(feats), at::cat(logits)};
}

FeatureStats feature_stats(const EvalNetwork& net, const FeatureSet& set, const std::string& source) {
  FeatureStats s = fit_gaussian(set.features);
  s.network = net.name();
  s.weights = net.weights();
  s.resize = net.resize();
  s.source = source;
  return s;
}

TokenizerScores score_tokenizer(Tokenizer& model, const ImageSource& source, int64_t count, int64_t batch,
                                EvalNetwork* net, const FeatureStats* real_stats) {
  TokenizerScores r;
  r.count = resolve_count(source, count);
  const int64_t K = model->quantizer->embedding.size(0);
  r.histogram = at::zeros({K}, at::kLong);
  const auto device = model->parameters().front().device();
  const Transform transform(source.transform);
  torch::NoGradGuard ng;
  std::vector<at::Tensor> real, rec;
  double psnr_sum = 0;
  Progress progress("evaluate tokenizer", r.count, 1.0);
  for (int64_t start = 0; start < r.count; start += batch) {
    const int64_t end = std::min(r.count, start + batch);
    const at::Tensor x = load_batch(source, transform, start, end).to(device);
    const auto out = model->forward(x);
    const at::Tensor y = out.reconstruction.to(at::kFloat).clamp(-1, 1);
    psnr_sum += psnr(x, y).sum().item<double>();
    r.histogram += code_histogram(out.quant.indices, K).cpu();
    if (net) {
      if (!real_stats) real.push_back(net->run(x).first);
      rec.push_back(net->run(y).first);
    }
    progress.update(end);
    throw_if_stopped("rfid");
  }
  progress.finish();
  r.psnr = psnr_sum / static_cast<double>(r.count);
  const CodeUsage u = code_usage(r.histogram);
  r.codes_used = u.used;
  r.usage = u.fraction;
  r.perplexity = u.perplexity;
  if (net) {
    r.real = real_stats ? *real_stats : feature_stats(*net, {at::cat(real), {}}, source.name);
    r.reconstructed = feature_stats(*net, {at::cat(rec), {}}, "reconstructions of " + source.name);
    r.rfid = frechet_distance(r.real, r.reconstructed);
  }
  return r;
}

}  // namespace seqgan
