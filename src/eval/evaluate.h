// Measuring image sets and tokenizers with a feature network: the pieces `seqgan evaluate`,
// `seqgan fid-stats` and the demo share.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eval/metrics.h"
#include "features/feature_net.h"
#include "features/lpips.h"
#include "seqgan/config.h"
#include "seqgan/data.h"
#include "tokenizer/tokenizer.h"

namespace seqgan {

// The evaluation feature network (config eval.feature_network / eval.feature_weights): the FID
// InceptionV3, or a classifier trained by `seqgan train-classifier --role eval`. A classifier of
// the perceptual-loss role is refused: the loss network never grades its own outputs.
class EvalNetwork {
 public:
  EvalNetwork(const EvalConfig& config, const torch::Device& device);

  struct Output {
    at::Tensor features;  // [B, D] float64: the pooled vector FID, precision and recall use
    at::Tensor logits;    // [B, K] float64: the network's class logits (IS)
    at::Tensor spatial;   // [B, S] float32: sFID's tap (Inception: mixed_6/conv, 7 channels, 2023
                          // values; a classifier: the first 7 channels of relu3_3), channels last
  };
  // x: [B, 1|3, H, W] in [-1, 1], on the CPU. The network resizes (Inception: to 299 as
  // eval.inception_resize says; a classifier: bilinear to the resolution it was trained at, when
  // the images differ).
  Output run(const at::Tensor& x);

  // Class logits [N, K] float64 of pooled features [N, D] as ADM's Inception Score takes them:
  // the Inception's logit layer without its bias (ADM multiplies by the weight of the TF graph's
  // softmax/logits/MatMul only); a classifier's own head.
  at::Tensor adm_logits(const at::Tensor& features);
  // The network's own logits [N, K] float64 of pooled features [N, D] (the "logit" tap's values).
  at::Tensor logits(const at::Tensor& features);

  const std::string& name() const { return name_; }        // the network's description
  const std::string& weights() const { return weights_; }  // its weight file
  const std::string& weights_sha256() const;               // SHA-256 of that file (computed once)
  const std::string& resize() const { return resize_; }
  const std::string& spatial() const { return spatial_; }  // what the spatial tap is
  torch::Device device() const { return device_; }

 private:
  std::shared_ptr<FeatureNetwork> net_;
  std::string name_, weights_, resize_, spatial_;
  mutable std::string sha256_;
  int64_t input_size_ = 0;  // 0: images go in as they are
  torch::Device device_;
};

// A set of images to measure: "data:train" / "data:test" (a split of the data set the config
// names, with its evaluation transform) or a folder of PNG/JPEG images (e.g. `seqgan sample`'s
// images/), brought to the config's resolution and channels.
// An ADM sample or reference batch (an .npz whose arr_0 holds uint8 images [N, H, W, 3],
// [N, H, W, 1] or [N, H, W]) is a source too: its images go to the network as they are stored.
struct ImageSource {
  std::shared_ptr<Dataset> data;
  TransformOptions transform;
  std::string name;
  std::string preprocess;  // how the images are prepared before the network, in words
};
ImageSource open_image_source(const std::string& spec, const DataConfig& data);

// How a TransformOptions prepares images, in words ("pad 2, resize to 32 (bilinear), center crop
// 32x32, grey"); "as stored" when it changes nothing.
std::string describe_transform(const TransformOptions& t);

struct FeatureSet {
  at::Tensor features;  // [N, D] float64
  at::Tensor logits;    // [N, K] float64
  at::Tensor spatial;   // [N, S] float32
};

// Runs the network over the first `count` images of the source (-1: all), `batch` at a time,
// reporting progress under `label`. With `images`, it also keeps the images the network saw, as
// an ADM batch (adm_images), so that a caller that writes them decodes them only once.
FeatureSet extract_features(EvalNetwork& net, const ImageSource& source, int64_t count, int64_t batch,
                            const std::string& label, at::Tensor* images = nullptr);

// The Gaussian fit of a feature set (or, with `spatial`, of its spatial features), labelled with
// the network and the source.
FeatureStats feature_stats(const EvalNetwork& net, const FeatureSet& set, const std::string& source,
                           const std::string& preprocess = "", bool spatial = false);

// ---------------------------------------------------------------------------------------------
// What `seqgan evaluate` measures: a source of images or of stored features/statistics.
//
// A spec is data:train|test, a folder of images, an .npz (ADM's layout: arr_0 images, mu/sigma
// and mu_s/sigma_s statistics; or seqgan's `features` [N, D] with optional `spatial` [N, S]), or a
// safetensors statistics file written by `seqgan fid-stats`. Anything else (a safetensors file
// of another kind, a missing path) is refused with what the file lacks and the accepted layouts.
struct Measured {
  std::string spec;          // as given
  std::string source;        // what it is, in words
  std::string file_sha256;   // of the file for .npz and statistics files
  std::string preprocess;    // how its images were prepared ("" when unknown)
  std::string network;       // the network of its features ("" when a foreign file does not say)
  std::string network_sha256;
  std::string resize;        // how that network resized the images
  int64_t count = 0;         // images (or feature rows) it stands for
  int64_t image_height = 0, image_width = 0;  // of stored images, when known
  FeatureSet set;            // per-image features, when measured or stored
  bool has_pool_stats = false, has_spatial_stats = false;
  FeatureStats pool, spatial;  // stored statistics (pool_stats() / spatial_stats() fit `set` otherwise)
  std::shared_ptr<Dataset> images;  // the data set measured, when images were (for skipped-file reports)

  // Statistics, stored or fitted from the per-image features (an error naming what is missing).
  FeatureStats pool_stats() const;
  FeatureStats spatial_stats() const;
  // `s` with this side's provenance (network, weights hash, resize, source, preprocessing).
  FeatureStats labelled(FeatureStats s) const;
  // Records that `net` measured this side's images.
  void measured_with(const EvalNetwork& net);
};

struct MeasureOptions {
  bool per_image = false;  // per-image features are required (IS, precision/recall)
  bool spatial = false;    // spatial statistics are required (sFID)
  int64_t count = -1;      // images to measure from an image source (-1: all)
  int64_t batch = 100;
};

// Measures (or reads) a spec. `network` is called only when images must go through the network,
// so that stored features and statistics need no weights.
Measured measure(const std::string& spec, const DataConfig& data, const std::function<EvalNetwork&()>& network,
                 const MeasureOptions& options, const std::string& label);

// Stored features or statistics of another network cannot be combined with `net`'s: an Error
// naming both.
void check_network(const Measured& m, const EvalNetwork& net);

// ADM's evaluation of two measured sides (per-image features and spatial statistics): IS on the
// generated side's logits in parts of 5000, FID, sFID, precision and recall.
struct AdmScores {
  InceptionScore inception;
  double fid = 0, sfid = 0;
  PrecisionRecall pr;
};
AdmScores adm_scores(EvalNetwork& net, const Measured& ref, const Measured& gen, const ManifoldOptions& manifold);

// `seqgan evaluate adm` and seqgan::evaluate_samples: config.eval's network (InceptionV3 with
// ADM's resize), both specs measured with per-image and spatial features, and their scores.
struct AdmEvaluation {
  Measured ref, gen;
  AdmScores scores;
  std::unique_ptr<EvalNetwork> net;
};
AdmEvaluation evaluate_adm(Config config, const std::string& ref, const std::string& gen, MeasureOptions options,
                           const ManifoldOptions& manifold);

// Warnings for two sides measured differently (network weights, preprocessing, resize, image
// size), one line each naming both values; empty when they agree.
std::vector<std::string> provenance_mismatches(const Measured& ref, const Measured& gen);

// Writes statistics in ADM's .npz layout (mu, sigma, mu_s, sigma_s, float64), with arr_0 images
// (uint8 [N, H, W, 3]) and per-image `features`/`spatial` when given, and seqgan's provenance
// as a JSON string in `seqgan_provenance` (a uint8 array; ADM's evaluator ignores it).
void save_adm_npz(const std::string& path, const Measured& measured, const at::Tensor& images, bool with_features);

// A tokenizer measured on a data split: reconstruction PSNR, codebook usage and, with a
// network, rFID (Frechet distance between the features of the inputs and of their
// reconstructions).
struct TokenizerScores {
  int64_t count = 0;
  double psnr = 0;             // mean per-image PSNR, dB
  double ssim = 0;             // mean per-image SSIM (eval/ssim.h) of the 8-bit images
  double lpips = -1;           // mean LPIPS (VGG, v0.1); -1 without LPIPS weights
  at::Tensor histogram;        // [K] int64: how often each code was chosen
  int64_t codes_used = 0;      // codes chosen at least once
  double usage = 0;            // codes_used / K
  double perplexity = 0;       // exp(entropy of the histogram)
  double rfid = -1;            // -1 without a network
  FeatureStats real, reconstructed;
};
// `real`, when given, holds the statistics of the same images under the same network (e.g. from
// an earlier pass or a fid-stats file): the inputs then are not run through the network again.
// With `lpips`, LPIPS is measured too.
TokenizerScores score_tokenizer(Tokenizer& model, const ImageSource& source, int64_t count, int64_t batch,
                                EvalNetwork* net, const FeatureStats* real = nullptr, LpipsImpl* lpips = nullptr);

// [B, C, H, W] in [-1, 1] -> the 8-bit pixel values a PNG of the images would hold (0..255, as
// float64): how SSIM sees generated and reconstructed images.
at::Tensor to_pixels(const at::Tensor& x);
// [B, C, H, W] in [-1, 1] -> uint8 [B, H, W, 3], the images of an ADM batch (`arr_0`; grey is
// repeated to three channels).
at::Tensor adm_images(const at::Tensor& x);

}  // namespace seqgan
