// Loading the frozen feature networks (features/feature_net.h) from their weight files.
#include <filesystem>

#include "features/classifier.h"
#include "features/feature_net.h"
#include "features/inception.h"
#include "features/vgg16.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"

namespace seqgan {
namespace {

const char* kVggHint =
    "convert torchvision's VGG16 weights once with `python3 tools/convert_vgg16.py vgg16-397923af.pth "
    "vgg16.safetensors` and set perceptual.weights to the result, or use perceptual.network=classifier";
const char* kClassifierHint =
    "train one first with `seqgan train-classifier` and set the weights path to the checkpoint it writes";

const char* kInceptionHint =
    "convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth once with `python3 tools/convert_inception.py "
    "pt_inception-2015-12-05-6726825d.pth inception.safetensors` and set eval.feature_weights to the result, or use "
    "eval.feature_network=classifier";

// A network converted from public Python weights. Our converters mark their files; a plain
// safetensors copy of the Python state dict (no metadata) is accepted too, the strict tensor
// check guards both.
template <typename Net>
std::shared_ptr<FeatureNetwork> load_converted(const std::string& path, const std::string& kind, const char* hint) {
  const safetensors::Header header = safetensors::read_header(path);
  if (header.metadata.count("format")) {
    const CheckpointMeta meta = CheckpointMeta::from_metadata(header.metadata, path);
    SEQGAN_CHECK_HINT(meta.kind == kind, hint, path, ": expected ", kind, " weights (kind '", kind, "'), found kind '",
                      meta.kind, "'");
  }
  auto net = std::make_shared<Net>();
  safetensors::TensorMap tensors = safetensors::load(path).tensors;
  // Python stores batch norm's step counter as a scalar, some libtorch versions as [1]; it
  // does not affect evaluation, so only its element count must agree.
  const safetensors::TensorMap own = state_dict(*net);
  for (auto& [name, t] : tensors) {
    const auto it = own.find(name);
    if (it != own.end() && name.size() > 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0 &&
        t.numel() == it->second.numel())
      t = t.reshape(it->second.sizes());
  }
  load_state_dict(*net, tensors, {}, path);
  return net;
}

}  // namespace

std::shared_ptr<FeatureNetwork> load_feature_network(const std::string& kind, const std::string& path,
                                                     const torch::Device& device) {
  SEQGAN_CHECK_HINT(kind == "vgg16" || kind == "classifier" || kind == "inception", "use vgg16, inception or classifier",
                    "expected a feature network kind vgg16 | inception | classifier, found '", kind, "'");
  const char* hint = kind == "vgg16" ? kVggHint : kind == "inception" ? kInceptionHint : kClassifierHint;
  SEQGAN_CHECK_HINT(!path.empty(), hint, "no weight file given for the '", kind,
                    "' feature network (random weights are never used)");
  SEQGAN_CHECK_HINT(std::filesystem::is_regular_file(path), hint, "the '", kind, "' weight file '", path,
                    "' does not exist");
  std::shared_ptr<FeatureNetwork> net;
  if (kind == "vgg16") net = load_converted<Vgg16>(path, "vgg16", kVggHint);
  else if (kind == "inception") net = load_converted<InceptionV3Fid>(path, "inception", kInceptionHint);
  else net = load_classifier(path);
  net->freeze();
  net->to(device);
  return net;
}

}  // namespace seqgan
