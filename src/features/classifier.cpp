// The two small classifier architectures and their checkpoints; see classifier.h.
#include "features/classifier.h"

#include <nlohmann/json.hpp>

#include "seqgan/checkpoint.h"
#include "seqgan/error.h"

namespace seqgan {
namespace {

namespace nn = torch::nn;
using nlohmann::json;

constexpr int kStages = 5;
constexpr int kStageMult[kStages] = {1, 2, 4, 8, 8};
constexpr int kFeaturesPos = kStages;  // position of "features" in tap_names()
constexpr int kLogitPos = kStages + 1;

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  // No bias: batch norm follows and would cancel it.
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

// conv, BN, ReLU, conv, BN, + shortcut, ReLU (He et al.'s basic block). The shortcut is a strided
// 1x1 conv + BN when the shape changes.
struct BasicBlockImpl : nn::Module {
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
    conv1 = register_module("conv1", conv3x3(in, out, stride));
    bn1 = register_module("bn1", nn::BatchNorm2d(out));
    conv2 = register_module("conv2", conv3x3(out, out));
    bn2 = register_module("bn2", nn::BatchNorm2d(out));
    if (stride != 1 || in != out)
      shortcut = register_module(
          "shortcut", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)),
                                     nn::BatchNorm2d(out)));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = torch::relu(bn1(conv1(x)));  // [B, in, H, W] -> [B, out, H/s, W/s]
    h = bn2(conv2(h));
    return torch::relu(h + (shortcut ? shortcut->forward(x) : x));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  nn::Sequential shortcut{nullptr};
};
TORCH_MODULE(BasicBlock);

template <class T>
T get_field(const json& j, const char* key, const std::string& where, std::vector<std::string>& problems) {
  if (!j.contains(key)) {
    problems.push_back(str("missing key '", key, "'"));
    return T{};
  }
  const json& v = j.at(key);
  if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_string()) return v.get<std::string>();
    problems.push_back(str("'", key, "' must be a string, found ", v.dump()));
  } else {
    if (v.is_number_integer()) return v.get<T>();
    problems.push_back(str("'", key, "' must be an integer, found ", v.dump()));
  }
  return T{};
}

}  // namespace

// ----- ClassifierArch -------------------------------------------------------------------------

void ClassifierArch::validate() const {
  std::vector<std::string> problems;
  if (kind != "vgg" && kind != "resnet") problems.push_back(str("kind must be vgg | resnet, found '", kind, "'"));
  if (channels != 1 && channels != 3) problems.push_back(str("channels must be 1 or 3, found ", channels));
  if (width < 1 || width > 1024) problems.push_back(str("width must be in [1, 1024], found ", width));
  if (num_classes < 2) problems.push_back(str("num_classes must be >= 2, found ", num_classes));
  if (resolution < 16) problems.push_back(str("resolution must be >= 16 (four 2x reductions), found ", resolution));
  if (problems.empty()) return;
  std::string text = "invalid classifier architecture:";
  for (const auto& p : problems) text += "\n  " + p;
  throw Error(str("ClassifierArch::validate: ", text), "fix the classifier settings (kind, channels, width, num_classes, resolution)");
}

std::string ClassifierArch::to_json() const {
  return json{{"kind", kind}, {"channels", channels}, {"width", width}, {"num_classes", num_classes},
              {"resolution", resolution}}
      .dump();
}

ClassifierArch ClassifierArch::from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(str("ClassifierArch::from_json: ", where, ": expected JSON, found '", text.substr(0, 80), "' (", e.what(), ")"),
                "the checkpoint metadata is damaged; train the classifier again");
  }
  SEQGAN_CHECK(j.is_object(), where, ": expected a JSON object for the classifier architecture, found ", j.dump());
  std::vector<std::string> problems;
  ClassifierArch a;
  a.kind = get_field<std::string>(j, "kind", where, problems);
  a.channels = get_field<int>(j, "channels", where, problems);
  a.width = get_field<int>(j, "width", where, problems);
  a.num_classes = get_field<int>(j, "num_classes", where, problems);
  a.resolution = get_field<int>(j, "resolution", where, problems);
  for (const auto& item : j.items())
    if (item.key() != "kind" && item.key() != "channels" && item.key() != "width" && item.key() != "num_classes" &&
        item.key() != "resolution")
      problems.push_back(str("unknown key '", item.key(), "'"));
  if (!problems.empty()) {
    std::string msg = str(where, ": invalid classifier architecture:");
    for (const auto& p : problems) msg += "\n  " + p;
    throw Error(str("ClassifierArch::from_json: ", msg),
                "expected keys kind, channels, width, num_classes, resolution; was the file written by another version?");
  }
  a.validate();
  return a;
}

bool ClassifierArch::operator==(const ClassifierArch& o) const {
  return kind == o.kind && channels == o.channels && width == o.width && num_classes == o.num_classes &&
         resolution == o.resolution;
}

// ----- Classifier -----------------------------------------------------------------------------

Classifier::Classifier(const ClassifierArch& arch) : arch_(arch) {
  arch_.validate();
  const bool resnet = arch_.kind == "resnet";
  int64_t in = arch_.channels;
  if (resnet) {
    stem_ = register_module("stem", nn::Sequential(conv3x3(in, arch_.width), nn::BatchNorm2d(arch_.width), nn::ReLU()));
    in = arch_.width;
  }
  for (int s = 0; s < kStages; ++s) {
    const int64_t out = int64_t{arch_.width} * kStageMult[s];
    nn::Sequential stage;
    if (resnet) {
      stage->push_back(BasicBlock(in, out, s == 0 ? 1 : 2));
    } else {
      for (int j = 0; j < 2; ++j) {
        stage->push_back(conv3x3(j == 0 ? in : out, out));
        stage->push_back(nn::BatchNorm2d(out));
        stage->push_back(nn::ReLU());
      }
    }
    stages_.push_back(register_module(str("stage", s + 1), stage));
    in = out;
  }
  head_ = register_module("head", nn::Linear(in, arch_.num_classes));
}

std::vector<std::string> Classifier::tap_names() const {
  return {"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "features", "logit"};
}

std::string Classifier::description() const {
  return str("classifier ", arch_.kind, " (width ", arch_.width, ", ", arch_.channels, " channel",
             arch_.channels == 1 ? "" : "s", ", ", arch_.num_classes, " classes, ", arch_.resolution, "px)");
}

at::Tensor Classifier::adapt_input(const at::Tensor& x) const {
  SEQGAN_CHECK_HINT(x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3), "pass images as [B, C, H, W] with C = 1 or 3",
                    description(), ": expected a [B, 1|3, H, W] image batch, found shape ", x.sizes());
  SEQGAN_CHECK_HINT(x.size(2) >= 16 && x.size(3) >= 16, "use images of at least 16x16", description(),
                    ": expected H, W >= 16 (four 2x reductions), found ", x.size(2), "x", x.size(3));
  SEQGAN_CHECK(x.is_floating_point(), description(), ": expected floating-point images in [-1, 1], found ",
               x.scalar_type());
  if (x.size(1) == arch_.channels) return x;
  if (arch_.channels == 3) return x.expand({-1, 3, -1, -1});  // [B, 1, H, W] -> [B, 3, H, W]
  const at::Tensor w = torch::tensor({0.299, 0.587, 0.114}, x.options()).view({1, 3, 1, 1});
  return (x * w).sum(1, /*keepdim=*/true);  // [B, 3, H, W] -> [B, 1, H, W]
}

std::map<std::string, at::Tensor> Classifier::taps(const at::Tensor& x, const std::vector<std::string>& names) {
  const std::vector<int> positions = tap_positions(names);
  std::map<std::string, at::Tensor> out;
  if (positions.empty()) return out;
  const int deepest = *std::max_element(positions.begin(), positions.end());
  auto wanted = [&](int p) { return std::find(positions.begin(), positions.end(), p) != positions.end(); };
  const std::vector<std::string> all = tap_names();

  at::Tensor h = adapt_input(x);
  if (stem_) h = stem_->forward(h);  // [B, C, H, W] -> [B, width, H, W]
  for (int s = 0; s < kStages && s <= deepest; ++s) {
    if (!stem_ && s > 0) h = torch::max_pool2d(h, 2);  // [B, c, H, W] -> [B, c, H/2, W/2]
    h = stages_[s]->forward(h);
    if (wanted(s)) out[all[s]] = h;
  }
  if (deepest >= kFeaturesPos) {
    const at::Tensor features = h.mean({2, 3});  // [B, 8 width, h, w] -> [B, 8 width]
    if (wanted(kFeaturesPos)) out["features"] = features;
    if (wanted(kLogitPos)) out["logit"] = head_(features);  // [B, num_classes]
  }
  return out;
}

at::Tensor Classifier::forward(const at::Tensor& x) { return taps(x, {"logit"}).at("logit"); }

// ----- checkpoints ----------------------------------------------------------------------------

void save_classifier(const std::string& path, const Classifier& model, const std::string& train_json,
                     const std::map<std::string, std::string>& extra) {
  json train;
  try {
    train = json::parse(train_json);
  } catch (const json::exception& e) {
    throw Error(str("save_classifier: expected the training options as JSON, found '", train_json.substr(0, 80), "'"));
  }
  CheckpointMeta meta;
  meta.kind = "classifier";
  meta.config_json = json{{"arch", json::parse(model.arch().to_json())}, {"train", train}}.dump();
  meta.extra = extra;
  save_checkpoint(path, model, meta);
}

ClassifierArch read_classifier_arch(const std::string& path) {
  const CheckpointMeta meta = read_checkpoint_meta(path);
  SEQGAN_CHECK_HINT(meta.kind == "classifier", "pass a checkpoint written by `seqgan train-classifier`", path,
                    ": expected a 'classifier' checkpoint, found kind '", meta.kind, "'");
  json config;
  try {
    config = json::parse(meta.config_json);
  } catch (const json::exception&) {
    throw Error(str("read_classifier_arch: ", path, ": the checkpoint config is not JSON"), "train the classifier again");
  }
  SEQGAN_CHECK_HINT(config.is_object() && config.contains("arch"), "train the classifier again", path,
                    ": expected the checkpoint config to hold an 'arch' object, found ", meta.config_json.substr(0, 120));
  return ClassifierArch::from_json(config.at("arch").dump(), path + " (config.arch)");
}

std::shared_ptr<Classifier> load_classifier(const std::string& path, const std::string& expected_kind) {
  const ClassifierArch arch = read_classifier_arch(path);
  SEQGAN_CHECK_HINT(expected_kind.empty() || arch.kind == expected_kind,
                    str("train a '", expected_kind, "' classifier (kind=", expected_kind,
                        "); the loss and evaluation networks must be different ones"),
                    path, ": expected a classifier of kind '", expected_kind, "', found '", arch.kind, "'");
  auto model = std::make_shared<Classifier>(arch);
  load_state_dict(*model, safetensors::load(path).tensors, {}, path);
  model->eval();
  return model;
}

}  // namespace seqgan
