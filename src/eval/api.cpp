// The public evaluation entry points (seqgan/evaluate.h) over the pieces `seqgan evaluate` uses.
#include "seqgan/evaluate.h"

#include "eval/evaluate.h"
#include "seqgan/runtime.h"
#include "train/run.h"

namespace seqgan {

SampleScores evaluate_samples(const Config& config, const std::string& reference, const std::string& samples) {
  MeasureOptions options;  // as `seqgan evaluate adm` without --count and --batch-size
  options.count = config.eval.num_samples;
  options.batch = config.eval.batch_size;
  const AdmEvaluation e = evaluate_adm(config, reference, samples, options, ManifoldOptions{});
  SampleScores s;
  s.inception_score = e.scores.inception.mean;
  s.is_parts = e.scores.inception.splits;
  s.fid = e.scores.fid;
  s.sfid = e.scores.sfid;
  s.precision = e.scores.pr.precision;
  s.recall = e.scores.pr.recall;
  s.reference_count = e.ref.count;
  s.sample_count = e.gen.count;
  s.network = e.net->name();
  s.network_sha256 = e.net->weights_sha256();
  s.resize = e.net->resize();
  s.warnings = provenance_mismatches(e.ref, e.gen);
  return s;
}

TokenizerEvaluation evaluate_tokenizer(const Config& config, const std::string& tokenizer_path, const std::string& images,
                                       int64_t count) {
  const auto device = to_device(resolve_device(config.device));
  auto tok = load_tokenizer(tokenizer_path, device);
  const ImageSource source = open_image_source(images, tok.config.data);
  EvalNetwork net(config.eval, device);
  Lpips lpips{nullptr};
  if (!config.eval.lpips_weights.empty()) lpips = load_lpips(config.eval.lpips_weights, device);
  const TokenizerScores s = score_tokenizer(tok.model, source, count, config.eval.batch_size, &net, nullptr,
                                            lpips.is_empty() ? nullptr : lpips.get());
  TokenizerEvaluation e;
  e.count = s.count;
  e.psnr = s.psnr;
  e.ssim = s.ssim;
  e.lpips = s.lpips;
  e.rfid = s.rfid;
  e.codes_used = s.codes_used;
  e.usage = s.usage;
  e.perplexity = s.perplexity;
  const at::Tensor h = s.histogram.to(at::kLong).contiguous();
  e.histogram.assign(h.data_ptr<int64_t>(), h.data_ptr<int64_t>() + h.numel());
  e.network = net.name();
  e.network_sha256 = net.weights_sha256();
  return e;
}

}  // namespace seqgan
