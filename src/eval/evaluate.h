// Measuring image sets and tokenizers with a feature network: the pieces `seqgan evaluate`,
// `seqgan fid-stats` and the demo share.
#pragma once

#include <memory>
#include <string>

#include "eval/metrics.h"
#include "losses/feature_net.h"
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

  // x: [B, 1|3, H, W] in [-1, 1]. Returns the pooled features [B, D] and the logits [B, K], both
  // float64 on the CPU. The network resizes (Inception: bilinear to 299; a classifier: bilinear
  // to the resolution it was trained at, when the images differ).
  std::pair<at::Tensor, at::Tensor> run(const at::Tensor& x);

  const std::string& name() const { return name_; }        // the network's description
  const std::string& weights() const { return weights_; }  // its weight file
  const std::string& resize() const { return resize_; }
  torch::Device device() const { return device_; }

 private:
  std::shared_ptr<FeatureNetwork> net_;
  std::string name_, weights_, resize_;
  int64_t input_size_ = 0;  // 0: images go in as they are
  torch::Device device_;
};

// A set of images to measure: "data:train" / "data:test" (a split of the data set the config
// names, with its evaluation transform) or a folder of PNG/JPEG images (e.g. `seqgan sample`'s
// images/), brought to the config's resolution and channels.
struct ImageSource {
  std::shared_ptr<Dataset> data;
  TransformOptions transform;
  std::string name;
};
ImageSource open_image_source(const std::string& spec, const DataConfig& data);

struct FeatureSet {
  at::Tensor features;  // [N, D] float64
  at::Tensor logits;    // [N, K] float64
};

// Runs the network over the first `count` images of the source (-1: all), `batch` at a time,
// reporting progress under `label`.
FeatureSet extract_features(EvalNetwork& net, const ImageSource& source, int64_t count, int64_t batch,
                            const std::string& label);

// The Gaussian fit of a feature set, labelled with the network and the source.
FeatureStats feature_stats(const EvalNetwork& net, const FeatureSet& set, const std::string& source);

// A tokenizer measured on a data split: reconstruction PSNR, codebook usage and, with a
// network, rFID (Frechet distance between the features of the inputs and of their
// reconstructions).
struct TokenizerScores {
  int64_t count = 0;
  double psnr = 0;             // mean per-image PSNR, dB
  at::Tensor histogram;        // [K] int64: how often each code was chosen
  int64_t codes_used = 0;      // codes chosen at least once
  double usage = 0;            // codes_used / K
  double perplexity = 0;       // exp(entropy of the histogram)
  double rfid = -1;            // -1 without a network
  FeatureStats real, reconstructed;
};
// `real`, when given, holds the statistics of the same images under the same network (e.g. from
// an earlier pass or a fid-stats file): the inputs then are not run through the network again.
TokenizerScores score_tokenizer(Tokenizer& model, const ImageSource& source, int64_t count, int64_t batch,
                                EvalNetwork* net, const FeatureStats* real = nullptr);

}  // namespace seqgan
