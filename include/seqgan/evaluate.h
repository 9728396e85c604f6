// Evaluation from a program: generated images against a reference as ADM's evaluator measures
// them (Inception Score, FID, sFID, precision, recall), and a tokenizer's reconstructions (rFID,
// PSNR, SSIM, LPIPS, codebook usage), each with what it was measured with. The same numbers as
// `seqgan evaluate adm` and `seqgan evaluate tokenizer`. Errors are seqgan::Error.
//
//   #include <seqgan/evaluate.h>
//
//   seqgan::Config config = seqgan::make_preset("fmnist");
//   config.eval.feature_weights = "runs/fmnist/classifier-eval/classifier.safetensors";
//   const seqgan::SampleScores s = seqgan::evaluate_samples(config, "fmnist-test.npz", "samples-ar/samples.npz");
//   std::printf("FID %.3f, IS %.3f (%s)\n", s.fid, s.inception_score, s.network.c_str());
//
//   const seqgan::TokenizerEvaluation t =
//       seqgan::evaluate_tokenizer(config, "runs/fmnist/tokenizer-phase2/tokenizer.safetensors", "data:test");
//   std::printf("rFID %.3f, PSNR %.2f dB, usage %.1f%%\n", t.rfid, t.psnr, 100 * t.usage);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "seqgan/config.h"

namespace seqgan {

struct SampleScores {
  double inception_score = 0;  // on consecutive parts of 5000 samples, as ADM
  int is_parts = 0;
  double fid = 0;
  double sfid = 0;
  double precision = 0;        // k = 3 nearest neighbours, as ADM
  double recall = 0;
  int64_t reference_count = 0, sample_count = 0;
  // What measured them: the network's description, the SHA-256 of its weights and how it
  // resized the images.
  std::string network, network_sha256, resize;
  // One line for each way the two sides were measured differently (weights, resize,
  // preprocessing, image size); empty when they agree.
  std::vector<std::string> warnings;
};

// `reference` and `samples` are what `seqgan evaluate adm` takes: "data:train" / "data:test" of
// config.data, a folder of images, an .npz sample or reference batch (ADM's layout, or
// seqgan's per-image features), or for the reference a statistics file that holds per-image
// features. The network is config.eval's (InceptionV3 with ADM's resize, or a classifier). Of an
// image source, the first config.eval.num_samples images are measured, as the command does
// without --count.
SampleScores evaluate_samples(const Config& config, const std::string& reference, const std::string& samples);

struct TokenizerEvaluation {
  int64_t count = 0;           // images measured
  double psnr = 0;             // mean per-image PSNR, dB
  double ssim = 0;             // mean per-image SSIM of the 8-bit images (scikit-image's)
  double lpips = -1;           // mean LPIPS (VGG, v0.1); -1 without config.eval.lpips_weights
  double rfid = -1;            // Frechet distance between the inputs' and reconstructions' features
  int64_t codes_used = 0;      // codes chosen at least once
  double usage = 0;            // codes_used / codebook size
  double perplexity = 0;       // exp(entropy of the code histogram)
  std::vector<int64_t> histogram;  // how often each code was chosen
  std::string network, network_sha256;  // what measured rFID
};

// The tokenizer file's reconstructions of `images` ("data:test" / "data:train" of the data the
// tokenizer was trained on, or a folder of images), the first `count` (-1: all).
TokenizerEvaluation evaluate_tokenizer(const Config& config, const std::string& tokenizer_path,
                                          const std::string& images = "data:test", int64_t count = -1);

}  // namespace seqgan
