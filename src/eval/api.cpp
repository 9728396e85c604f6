// The public evaluation entry points (seqgan/evaluate.h) over the pieces `seqgan evaluate` uses.
#include "seqgan/evaluate.h"

#include <memory>

#include "eval/evaluate.h"
#include "seqgan/runtime.h"
#include "train/run.h"

namespace seqgan {

SampleScores evaluate_samples(const Config& given, const std::string& reference, const std::string& samples) {
  Config config = given;
  if (config.eval.feature_network == "inception") config.eval.inception_resize = "adm";
  std::unique_ptr<EvalNetwork> net;
  const std::function<EvalNetwork&()> network = [&]() -> EvalNetwork& {
    if (!net) net = std::make_unique<EvalNetwork>(config.eval, to_device(resolve_device(config.device)));
    return *net;
  };
  MeasureOptions options;
  options.per_image = options.spatial = true;
  options.batch = config.eval.batch_size;
  const Measured ref = measure(reference, config.data, network, options, "features (ref)");
  const Measured gen = measure(samples, config.data, network, options, "features (gen)");
  const AdmScores a = adm_scores(network(), ref, gen, ManifoldOptions{});
  SampleScores s;
  s.inception_score = a.inception.mean;
  s.is_parts = a.inception.splits;
  s.fid = a.fid;
  s.sfid = a.sfid;
  s.precision = a.pr.precision;
  s.recall = a.pr.recall;
  s.reference_count = ref.count;
  s.sample_count = gen.count;
  s.network = net->name();
  s.network_sha256 = net->weights_sha256();
  s.resize = net->resize();
  s.warnings = provenance_mismatches(ref, gen);
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
