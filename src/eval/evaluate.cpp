#include "eval/evaluate.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "eval/psnr.h"
#include "eval/ssim.h"
#include "features/classifier.h"
#include "features/inception.h"
#include "io/hash.h"
#include "io/npz.h"
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

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

constexpr const char* kAcceptedSources =
    "data:train or data:test, a folder of images, an .npz (ADM's layout: arr_0 uint8 images [N, H, W, 3], "
    "mu/sigma and mu_s/sigma_s; or `features` [N, D] with optional `spatial` [N, S]), or a safetensors file "
    "written by `seqgan fid-stats`";

// The images of an ADM batch: arr_0, uint8, [N, H, W, C] (C = 1 or 3) or [N, H, W] (grey);
// labels from arr_1 ([N] integers) when present.
class ArrayImages : public Dataset {
 public:
  ArrayImages(const std::map<std::string, at::Tensor>& arrays, const std::string& path) : path_(path) {
    const at::Tensor& a = arrays.at("arr_0");
    SEQGAN_CHECK_HINT(a.scalar_type() == at::kByte,
                      "store images as uint8 0..255 (e.g. np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8))", path,
                      ": arr_0 holds ", a.scalar_type(), " values; ADM batches hold uint8 images");
    SEQGAN_CHECK_HINT((a.dim() == 4 && (a.size(3) == 1 || a.size(3) == 3)) || a.dim() == 3,
                      "store images as [N, H, W, 3] (or [N, H, W, 1] / [N, H, W] for grey), channels last", path,
                      ": arr_0 has shape ", a.sizes(), "; expected images [N, H, W, 3]");
    SEQGAN_CHECK_HINT(a.size(0) >= 1 && a.size(1) >= 2 && a.size(2) >= 2 && a.size(1) <= 16384 && a.size(2) <= 16384,
                      "store at least one image of 2x2 to 16384x16384 pixels", path, ": arr_0 has shape ", a.sizes(),
                      ", which holds no usable images");
    images_ = a.dim() == 3 ? a.unsqueeze(3) : a;
    const auto labels = arrays.find("arr_1");
    if (labels != arrays.end() && labels->second.dim() == 1 && labels->second.size(0) == images_.size(0) &&
        !labels->second.is_floating_point())
      labels_ = labels->second.to(at::kLong);
  }
  int64_t size() const override { return images_.size(0); }
  RawExample load(int64_t index) const override {
    check_index(index);
    Image img(static_cast<int>(images_.size(2)), static_cast<int>(images_.size(1)), static_cast<int>(images_.size(3)));
    const at::Tensor t = images_[index].contiguous();
    std::memcpy(img.pixels.data(), t.data_ptr<uint8_t>(), img.pixels.size());
    return {img, labels_.defined() ? labels_[index].item<int64_t>() : -1};
  }
  int num_classes() const override { return labels_.defined() ? static_cast<int>(labels_.max().item<int64_t>()) + 1 : 0; }
  std::vector<std::string> class_names() const override { return {}; }
  int channels() const override { return static_cast<int>(images_.size(3)); }
  std::string description() const override {
    return str(images_.size(0), " images ", images_.size(1), "x", images_.size(2), "x", images_.size(3));
  }
  const at::Tensor& images() const { return images_; }

 private:
  std::string path_;
  at::Tensor images_, labels_;
};

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
    const auto resize = config.inception_resize == "adm" ? InceptionV3Fid::Resize::kAdm : InceptionV3Fid::Resize::kPytorchFid;
    std::dynamic_pointer_cast<InceptionV3Fid>(net_)->set_resize(resize);
    resize_ = InceptionV3Fid::resize_description(resize);
    spatial_ = "mixed_6/conv (Mixed_6d branch1x1), first 7 channels of 17x17";
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
    spatial_ = "relu3_3, first 7 channels";
    net_ = net;
  }
  name_ = net_->description();
}

EvalNetwork::Output EvalNetwork::run(const at::Tensor& x) {
  torch::NoGradGuard ng;
  at::Tensor h = x.to(device_, at::kFloat);
  if (input_size_ > 0 && (h.size(2) != input_size_ || h.size(3) != input_size_))
    h = F::interpolate(h, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{input_size_, input_size_})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  const bool inception = input_size_ == 0;
  auto out = net_->taps(h, {inception ? "spatial" : "relu3_3", "features", "logit"});
  at::Tensor spatial = inception ? out.at("spatial")
                                 : out.at("relu3_3").slice(1, 0, InceptionV3Fid::kSpatialChannels).permute({0, 2, 3, 1})
                                       .reshape({h.size(0), -1});
  return {out.at("features").to(at::kDouble).cpu(), out.at("logit").to(at::kDouble).cpu(), spatial.to(at::kFloat).cpu()};
}

at::Tensor EvalNetwork::adm_logits(const at::Tensor& features) {
  const auto inception = std::dynamic_pointer_cast<InceptionV3Fid>(net_);
  if (!inception) return logits(features);
  torch::NoGradGuard ng;
  const at::Tensor f = features.to(device_, at::kFloat);
  return at::matmul(f, inception->fc_weight().transpose(0, 1)).to(at::kDouble).cpu();
}

at::Tensor EvalNetwork::logits(const at::Tensor& features) {
  torch::NoGradGuard ng;
  const at::Tensor f = features.to(device_, at::kFloat);
  if (const auto inception = std::dynamic_pointer_cast<InceptionV3Fid>(net_)) return inception->classify(f).to(at::kDouble).cpu();
  return std::dynamic_pointer_cast<Classifier>(net_)->classify(f).to(at::kDouble).cpu();
}

const std::string& EvalNetwork::weights_sha256() const {
  if (sha256_.empty()) sha256_ = sha256_file(weights_);
  return sha256_;
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
    s.preprocess = describe_transform(s.transform);
    return s;
  }
  if (std::filesystem::is_regular_file(spec) && has_suffix(spec, ".npz")) {
    s.data = std::make_shared<ArrayImages>(npz::load(spec), spec);
    s.name = str(spec, " (arr_0: ", s.data->description(), ")");
    s.preprocess = describe_transform(s.transform);
    return s;
  }
  SEQGAN_CHECK_HINT(std::filesystem::is_directory(spec),
                    "give data:train, data:test, a folder of images, an .npz sample batch, or (where accepted) a "
                    "statistics file",
                    "image source '", spec, "' is neither a data split, a folder nor an .npz batch");
  ImageFolderOptions o;
  o.channels = data.channels;
  o.skip_bad = data.skip_bad_files;
  s.data = std::make_shared<ImageFolder>(spec, o);
  s.transform.resolution = data.resolution;
  s.transform.channels = data.channels;
  s.transform.center_crop = true;
  s.preprocess = describe_transform(s.transform);
  return s;
}

std::string describe_transform(const TransformOptions& t) {
  std::vector<std::string> steps;
  if (t.pad > 0) steps.push_back(str("pad ", t.pad));
  if (t.resolution > 0) {
    if (t.preprocess == Preprocess::kAdm) steps.push_back(str("ADM center crop to ", t.resolution, "x", t.resolution));
    else {
      steps.push_back(str("resize short side to ", t.resolution, " (", resize_filter_name(t.filter), ")"));
      steps.push_back(str(t.random_crop ? "random crop " : "center crop ", t.resolution, "x", t.resolution));
    }
  }
  if (t.channels == 1) steps.push_back("grey (ITU-R 601 luma)");
  if (t.channels == 3) steps.push_back("RGB");
  if (steps.empty()) return "as stored";
  std::string s;
  for (const auto& step : steps) s += (s.empty() ? "" : ", ") + step;
  return s;
}

FeatureSet extract_features(EvalNetwork& net, const ImageSource& source, int64_t count, int64_t batch,
                            const std::string& label, at::Tensor* images) {
  count = resolve_count(source, count);
  SEQGAN_CHECK(batch > 0, "batch must be positive, found ", batch);
  const Transform transform(source.transform);
  std::vector<at::Tensor> feats, logits, spatial, kept;
  Progress progress(label, count, 1.0);
  for (int64_t start = 0; start < count; start += batch) {
    const int64_t end = std::min(count, start + batch);
    const at::Tensor x = load_batch(source, transform, start, end);
    if (images) kept.push_back(adm_images(x));
    auto out = net.run(x);
    feats.push_back(out.features);
    logits.push_back(out.logits);
    spatial.push_back(out.spatial);
    progress.update(end);
    throw_if_stopped(label);
  }
  progress.finish();
  if (images) *images = at::cat(kept);
  return {at::cat(feats), at::cat(logits), at::cat(spatial)};
}

FeatureStats feature_stats(const EvalNetwork& net, const FeatureSet& set, const std::string& source,
                           const std::string& preprocess, bool spatial) {
  FeatureStats s = fit_gaussian(spatial ? set.spatial : set.features);
  s.network = net.name();
  s.weights = net.weights();
  s.weights_sha256 = net.weights_sha256();
  s.resize = net.resize();
  s.source = source;
  s.preprocess = preprocess;
  return s;
}

at::Tensor to_pixels(const at::Tensor& x) { return pixel_levels(x).to(at::kDouble); }

at::Tensor adm_images(const at::Tensor& x) {
  const at::Tensor pixels = pixel_levels(x).to(at::kByte).permute({0, 2, 3, 1});  // [B, H, W, C]
  return (pixels.size(3) == 1 ? pixels.expand({-1, -1, -1, 3}) : pixels).contiguous();
}

TokenizerScores score_tokenizer(Tokenizer& model, const ImageSource& source, int64_t count, int64_t batch,
                                EvalNetwork* net, const FeatureStats* real_stats, LpipsImpl* lpips) {
  TokenizerScores r;
  r.count = resolve_count(source, count);
  const int64_t K = model->quantizer->embedding.size(0);
  r.histogram = at::zeros({K}, at::kLong);
  const auto device = model->parameters().front().device();
  const Transform transform(source.transform);
  torch::NoGradGuard ng;
  std::vector<at::Tensor> real, rec;
  double psnr_sum = 0, ssim_sum = 0, lpips_sum = 0;
  Progress progress("evaluate tokenizer", r.count, 1.0);
  for (int64_t start = 0; start < r.count; start += batch) {
    const int64_t end = std::min(r.count, start + batch);
    const at::Tensor x = load_batch(source, transform, start, end).to(device);
    const auto out = model->forward(x);
    const at::Tensor y = out.reconstruction.to(at::kFloat).clamp(-1, 1);
    psnr_sum += psnr(x, y).sum().item<double>();
    ssim_sum += ssim(to_pixels(x), to_pixels(y)).sum().item<double>();
    if (lpips) lpips_sum += lpips->forward(x, y).sum().item<double>();
    r.histogram += code_histogram(out.quant.indices, K).cpu();
    if (net) {
      if (!real_stats) real.push_back(net->run(x).features);
      rec.push_back(net->run(y).features);
    }
    progress.update(end);
    throw_if_stopped("rfid");
  }
  progress.finish();
  r.psnr = psnr_sum / static_cast<double>(r.count);
  r.ssim = ssim_sum / static_cast<double>(r.count);
  if (lpips) r.lpips = lpips_sum / static_cast<double>(r.count);
  const CodeUsage u = code_usage(r.histogram);
  r.codes_used = u.used;
  r.usage = u.fraction;
  r.perplexity = u.perplexity;
  if (net) {
    r.real = real_stats ? *real_stats : feature_stats(*net, {at::cat(real), {}, {}}, source.name, source.preprocess);
    r.reconstructed = feature_stats(*net, {at::cat(rec), {}, {}}, "reconstructions of " + source.name, source.preprocess);
    r.rfid = frechet_distance(r.real, r.reconstructed);
  }
  return r;
}

namespace {

FeatureStats stored_stats(const std::map<std::string, at::Tensor>& arrays, const char* mu, const char* sigma,
                          const Measured& m) {
  FeatureStats s;
  s.mu = arrays.at(mu).to(at::kDouble);
  s.sigma = arrays.at(sigma).to(at::kDouble);
  SEQGAN_CHECK_HINT(s.mu.dim() == 1 && s.sigma.dim() == 2 && s.sigma.size(0) == s.mu.size(0) &&
                        s.sigma.size(1) == s.mu.size(0),
                    "store mu as [D] and sigma as [D, D]", m.spec, ": ", mu, " has shape ", s.mu.sizes(), " and ", sigma,
                    " has shape ", s.sigma.sizes(), "; expected [D] and [D, D]");
  s.count = m.count;
  return m.labelled(s);
}

// The provenance seqgan writes into its own .npz files (a JSON string as uint8 bytes).
constexpr const char* kProvenanceMember = "seqgan_provenance";

void read_npz(Measured& m, const std::map<std::string, at::Tensor>& arrays, const MeasureOptions& options,
              const std::function<EvalNetwork&()>& network, const std::string& label) {
  m.file_sha256 = sha256_file(m.spec);
  m.source = m.spec;
  std::string stored_source;
  if (arrays.count(kProvenanceMember)) {
    const at::Tensor bytes = arrays.at(kProvenanceMember).to(at::kByte).contiguous();
    const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(bytes.numel()));
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_object()) {
      stored_source = str(j.value("source", "?"), ", prepared: ", j.value("preprocess", "?"));
      m.network = j.value("network", "");
      m.network_sha256 = j.value("network_sha256", "");
      m.resize = j.value("resize", "");
      m.preprocess = j.value("preprocess", "");
      m.source = str(m.spec, " (", j.value("source", "?"), ")");
      m.count = j.value("count", int64_t{0});
    }
  }
  const bool has_images = arrays.count("arr_0") > 0;
  std::shared_ptr<ArrayImages> images;
  if (has_images) {
    images = std::make_shared<ArrayImages>(arrays, m.spec);  // checks arr_0
    m.image_height = images->images().size(1);
    m.image_width = images->images().size(2);
  }
  if (arrays.count("mu") || arrays.count("sigma")) {
    for (const char* k : {"mu", "sigma"})
      SEQGAN_CHECK_HINT(arrays.count(k), "store mu and sigma together", m.spec, ": has ", k == std::string("mu") ? "sigma" : "mu",
                        " but not ", k);
    m.has_pool_stats = true;
  }
  m.has_spatial_stats = arrays.count("mu_s") && arrays.count("sigma_s");
  const bool has_features = arrays.count("features") > 0;
  if (has_features) {
    const at::Tensor& f = arrays.at("features");
    SEQGAN_CHECK_HINT(f.dim() == 2 && f.size(0) >= 1 && f.is_floating_point(), "store features as floats [N, D]", m.spec,
                      ": `features` has shape ", f.sizes(), " and dtype ", f.scalar_type(), "; expected floats [N, D]");
    m.set.features = f.to(at::kDouble);
    if (arrays.count("spatial")) {
      const at::Tensor& sp = arrays.at("spatial");
      SEQGAN_CHECK_HINT(sp.dim() == 2 && sp.size(0) == f.size(0) && sp.is_floating_point(),
                        "store spatial features as floats [N, S] with one row per row of `features`", m.spec,
                        ": `spatial` has shape ", sp.sizes(), "; `features` has ", f.size(0), " rows");
      m.set.spatial = sp.to(at::kFloat);
    }
    if (m.count == 0) m.count = f.size(0);
  }
  const bool need_images = (options.per_image && !has_features) || (!m.has_pool_stats && !has_features) ||
                           (options.spatial && !m.has_spatial_stats && !m.set.spatial.defined());
  if (need_images) {
    SEQGAN_CHECK_HINT(has_images, str("give ", kAcceptedSources),
                      m.spec, ": needs ", options.per_image ? "per-image features" : "statistics",
                      ", but holds neither arr_0 images nor `features` (members: ",
                      [&] {
                        std::string names;
                        for (const auto& [k, v] : arrays) names += (names.empty() ? "" : ", ") + k;
                        return names;
                      }(),
                      ")");
    ImageSource source;
    source.data = images;
    source.name = m.spec;
    source.preprocess = describe_transform(source.transform);
    EvalNetwork& net = network();
    m.set = extract_features(net, source, options.count, options.batch, label);
    m.measured_with(net);
    m.preprocess = source.preprocess;
    m.count = m.set.features.size(0);
    // What the file says of its images (seqgan's provenance) stays in the description.
    m.source = str(m.spec, " (arr_0: ", source.data->description(),
                   stored_source.empty() ? std::string() : "; written from " + stored_source, ")");
  }
  if (m.has_pool_stats) m.pool = stored_stats(arrays, "mu", "sigma", m);
  if (m.has_spatial_stats) m.spatial = stored_stats(arrays, "mu_s", "sigma_s", m);
  if (m.count == 0 && has_images) m.count = arrays.at("arr_0").size(0);
}

}  // namespace

FeatureStats Measured::labelled(FeatureStats s) const {
  s.network = network;
  s.weights_sha256 = network_sha256;
  s.resize = resize;
  s.source = source;
  s.preprocess = preprocess;
  return s;
}

void Measured::measured_with(const EvalNetwork& net) {
  network = net.name();
  network_sha256 = net.weights_sha256();
  resize = net.resize();
}

FeatureStats Measured::pool_stats() const {
  if (has_pool_stats) return pool;
  SEQGAN_CHECK_HINT(set.features.defined(), str("give ", kAcceptedSources), spec, ": holds no features to fit");
  return labelled(fit_gaussian(set.features));
}

FeatureStats Measured::spatial_stats() const {
  if (has_spatial_stats) return spatial;
  SEQGAN_CHECK_HINT(set.spatial.defined(), "measure images (arr_0) or store mu_s/sigma_s, or `spatial` beside `features`",
                    spec, ": holds neither spatial statistics (mu_s, sigma_s) nor spatial features, so sFID cannot be computed");
  return labelled(fit_gaussian(set.spatial));
}

Measured measure(const std::string& spec, const DataConfig& data, const std::function<EvalNetwork&()>& network,
                 const MeasureOptions& options, const std::string& label) {
  Measured m;
  m.spec = spec;
  if (std::filesystem::is_regular_file(spec) && has_suffix(spec, ".npz")) {
    read_npz(m, npz::load(spec), options, network, label);
    return m;
  }
  if (std::filesystem::is_regular_file(spec)) {
    SEQGAN_CHECK_HINT(has_suffix(spec, ".safetensors"), str("give ", kAcceptedSources), spec,
                      " is a file, but neither an .npz nor a safetensors statistics file");
    const auto header = safetensors::read_header(spec);
    const auto kind = header.metadata.find("kind");
    if (kind == header.metadata.end() || kind->second != "fid-stats") {
      std::string names;
      for (const auto& info : header.tensors) names += (names.empty() ? "" : ", ") + info.name;
      throw Error(str(spec, " is a safetensors file but not seqgan feature statistics: ",
                      kind == header.metadata.end() ? std::string("its metadata has no 'kind'")
                                                    : "its metadata says kind '" + kind->second + "'",
                      " (tensors: ", names.empty() ? "none" : names, "), where `seqgan fid-stats` writes kind 'fid-stats' with mu [D] "
                      "and sigma [D, D]"),
                  str("write statistics with `seqgan fid-stats SOURCE --out FILE`, or give ", kAcceptedSources));
    }
    SEQGAN_CHECK_HINT(!options.per_image, "give the images (a folder, data split or .npz with arr_0) or per-image features",
                      spec, " holds statistics only, but this metric needs per-image features");
    m.pool = load_feature_stats(spec);
    m.has_pool_stats = true;
    m.file_sha256 = sha256_file(spec);
    m.source = m.pool.source;
    m.preprocess = m.pool.preprocess;
    m.network = m.pool.network;
    m.network_sha256 = m.pool.weights_sha256;
    m.resize = m.pool.resize;
    m.count = m.pool.count;
    return m;
  }
  const ImageSource source = open_image_source(spec, data);
  EvalNetwork& net = network();
  m.set = extract_features(net, source, options.count, options.batch, label);
  m.images = source.data;
  m.source = source.name;
  m.preprocess = source.preprocess;
  m.measured_with(net);
  m.count = m.set.features.size(0);
  if (source.transform.resolution > 0) m.image_height = m.image_width = source.transform.resolution;
  return m;
}

void check_network(const Measured& m, const EvalNetwork& net) {
  if (!m.network.empty() && m.network != net.name())
    throw Error(str(m.spec, " was measured with '", m.network, "', this evaluation uses '", net.name(), "'"),
                "set eval.feature_network / eval.feature_weights to that network, or measure the images anew");
}

AdmScores adm_scores(EvalNetwork& net, const Measured& ref, const Measured& gen, const ManifoldOptions& manifold) {
  check_network(ref, net);
  check_network(gen, net);
  AdmScores s;
  s.inception = inception_score_parts(net.adm_logits(gen.set.features), 5000);
  const FeatureStats rp = ref.pool_stats(), gp = gen.pool_stats(), rs = ref.spatial_stats(), gs = gen.spatial_stats();
  s.fid = frechet_distance(rp.mu, rp.sigma, gp.mu, gp.sigma);
  s.sfid = frechet_distance(rs.mu, rs.sigma, gs.mu, gs.sigma);
  s.pr = precision_recall(ref.set.features, gen.set.features, manifold);
  return s;
}

AdmEvaluation evaluate_adm(Config config, const std::string& ref, const std::string& gen, MeasureOptions options,
                           const ManifoldOptions& manifold) {
  if (config.eval.feature_network == "inception") config.eval.inception_resize = "adm";
  AdmEvaluation e;
  const std::function<EvalNetwork&()> network = [&]() -> EvalNetwork& {
    if (!e.net) e.net = std::make_unique<EvalNetwork>(config.eval, torch::Device(resolve_device(config.device)));
    return *e.net;
  };
  options.per_image = options.spatial = true;
  e.ref = measure(ref, config.data, network, options, "features (ref)");
  e.gen = measure(gen, config.data, network, options, "features (gen)");
  e.scores = adm_scores(network(), e.ref, e.gen, manifold);
  return e;
}

std::vector<std::string> provenance_mismatches(const Measured& ref, const Measured& gen) {
  std::vector<std::string> w;
  auto side = [](const std::string& v) { return v.empty() ? std::string("unknown") : v; };
  if (ref.network.empty() || gen.network.empty())
    w.push_back(str("the ", ref.network.empty() ? "reference" : "generated", " side does not name its feature network (a "
                    "foreign file); its numbers are comparable only if it was made with ", side(ref.network.empty() ? gen.network : ref.network),
                    " and the same preprocessing"));
  else if (!ref.network_sha256.empty() && !gen.network_sha256.empty() && ref.network_sha256 != gen.network_sha256)
    w.push_back(str("the two sides were measured with different weights of ", ref.network, ": sha256 ",
                    short_hash(ref.network_sha256), " (reference) vs ", short_hash(gen.network_sha256), " (generated)"));
  if (!ref.resize.empty() && !gen.resize.empty() && ref.resize != gen.resize)
    w.push_back(str("the network resized differently: reference '", ref.resize, "', generated '", gen.resize, "'"));
  if (!ref.preprocess.empty() && !gen.preprocess.empty() && ref.preprocess != gen.preprocess)
    w.push_back(str("the images were prepared differently: reference '", ref.preprocess, "', generated '", gen.preprocess, "'"));
  if (ref.image_height > 0 && gen.image_height > 0 &&
      (ref.image_height != gen.image_height || ref.image_width != gen.image_width))
    w.push_back(str("the images differ in size: reference ", ref.image_height, "x", ref.image_width, ", generated ",
                    gen.image_height, "x", gen.image_width));
  return w;
}

void save_adm_npz(const std::string& path, const Measured& m, const at::Tensor& images, bool with_features) {
  std::map<std::string, at::Tensor> arrays;
  const FeatureStats pool = m.pool_stats();
  arrays["mu"] = pool.mu.contiguous();
  arrays["sigma"] = pool.sigma.contiguous();
  if (m.has_spatial_stats || m.set.spatial.defined()) {
    const FeatureStats sp = m.spatial_stats();
    arrays["mu_s"] = sp.mu.contiguous();
    arrays["sigma_s"] = sp.sigma.contiguous();
  }
  if (images.defined()) arrays["arr_0"] = images.contiguous();
  if (with_features && m.set.features.defined()) {
    arrays["features"] = m.set.features.to(at::kFloat).contiguous();
    if (m.set.spatial.defined()) arrays["spatial"] = m.set.spatial.to(at::kFloat).contiguous();
  }
  const std::string text = nlohmann::json{{"network", m.network}, {"network_sha256", m.network_sha256},
                                          {"resize", m.resize}, {"preprocess", m.preprocess},
                                          {"source", m.source}, {"count", m.count}}.dump();
  arrays[kProvenanceMember] =
      at::from_blob(const_cast<char*>(text.data()), {static_cast<int64_t>(text.size())}, at::kByte).clone();
  npz::save(path, arrays, /*compressed=*/false);
}

}  // namespace seqgan
