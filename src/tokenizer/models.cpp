// The embedding API (include/seqgan/models.h) over the tokenizer, the transformers and sampling.
#include "seqgan/models.h"

#include <cmath>

#include "data/open.h"
#include "seqgan/checkpoint.h"
#include "seqgan/data.h"
#include "seqgan/error.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "transformer/sampling.h"
#include "train/run.h"
#include "transformer/transformer.h"

namespace seqgan {
namespace {

torch::Device device_of(const std::string& name) { return to_device(resolve_device(name)); }

}  // namespace

struct TokenizerModel::Impl {
  LoadedTokenizer loaded;
  torch::Device device = torch::kCPU;
  TransformOptions transform;
};

TokenizerModel::TokenizerModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenizerModel::TokenizerModel(TokenizerModel&&) noexcept = default;
TokenizerModel& TokenizerModel::operator=(TokenizerModel&&) noexcept = default;
TokenizerModel::~TokenizerModel() = default;

TokenizerModel TokenizerModel::load(const std::string& path, const std::string& device, const std::string& weights) {
  auto impl = std::make_unique<Impl>();
  impl->device = device_of(device);
  impl->loaded = load_tokenizer(path, impl->device, parse_weight_choice(weights));
  impl->loaded.model->eval();
  impl->transform = eval_transform(impl->loaded.config.data);
  impl->transform.pad = 0;  // a user's image is taken as it is, not as the data set's files
  return TokenizerModel(std::move(impl));
}

int TokenizerModel::resolution() const { return impl_->loaded.config.data.resolution; }
int TokenizerModel::channels() const { return impl_->loaded.config.data.channels; }
int64_t TokenizerModel::codebook_size() const { return impl_->loaded.model->quantizer->embedding.size(0); }
int64_t TokenizerModel::grid() const {
  return resolution() / tokenizer_downsample_factor(impl_->loaded.config.tokenizer);
}
int TokenizerModel::phase() const { return impl_->loaded.phase; }

at::Tensor TokenizerModel::encode(const std::vector<Image>& images) const {
  SEQGAN_CHECK_HINT(!images.empty(), "pass at least one image", "TokenizerModel::encode: no images");
  const Transform transform(impl_->transform);
  std::vector<at::Tensor> xs;
  for (size_t i = 0; i < images.size(); ++i) xs.push_back(image_to_tensor(transform.apply(images[i], 0, 0, static_cast<int64_t>(i))));
  return encode_tensor(at::stack(xs));
}

at::Tensor TokenizerModel::encode_tensor(const at::Tensor& images) const {
  SEQGAN_CHECK_HINT(images.dim() == 4 && images.size(1) == channels() && images.size(2) == resolution() &&
                        images.size(3) == resolution(),
                    str("pass images [B, ", channels(), ", ", resolution(), ", ", resolution(), "], or 8-bit images to encode()"),
                    "TokenizerModel::encode_tensor: expected [B, ", channels(), ", ", resolution(), ", ", resolution(),
                    "] in [-1, 1], found ", images.sizes());
  torch::NoGradGuard ng;
  return impl_->loaded.model->encode_indices(images.to(impl_->device, at::kFloat)).cpu();
}

at::Tensor TokenizerModel::decode_tensor(const at::Tensor& codes) const {
  SEQGAN_CHECK_HINT(codes.dim() == 3 && codes.size(1) == grid() && codes.size(2) == grid() && !codes.is_floating_point(),
                    str("pass integer codes [B, ", grid(), ", ", grid(), "]"), "TokenizerModel::decode: expected codes [B, ",
                    grid(), ", ", grid(), "], found ", codes.sizes(), " of ", codes.scalar_type());
  SEQGAN_CHECK_HINT(codes.numel() == 0 || (codes.min().item<int64_t>() >= 0 && codes.max().item<int64_t>() < codebook_size()),
                    "decode codes of this tokenizer's codebook", "TokenizerModel::decode: codes outside [0, ",
                    codebook_size(), ")");
  torch::NoGradGuard ng;
  return impl_->loaded.model->decode_indices(codes.to(impl_->device, at::kLong)).to(at::kFloat).cpu();
}

std::vector<Image> TokenizerModel::decode(const at::Tensor& codes) const { return tensor_to_images(decode_tensor(codes)); }

struct GeneratorModel::Impl {
  LoadedTransformer loaded;
  torch::Device device = torch::kCPU;
};

GeneratorModel::GeneratorModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GeneratorModel::GeneratorModel(GeneratorModel&&) noexcept = default;
GeneratorModel& GeneratorModel::operator=(GeneratorModel&&) noexcept = default;
GeneratorModel::~GeneratorModel() = default;

GeneratorModel GeneratorModel::load(const std::string& path, const std::string& device, const std::string& weights) {
  auto impl = std::make_unique<Impl>();
  impl->device = device_of(device);
  impl->loaded = load_transformer(path, impl->device, parse_weight_choice(weights));
  impl->loaded.model->eval();
  return GeneratorModel(std::move(impl));
}

bool GeneratorModel::autoregressive() const { return impl_->loaded.model->causal(); }
int GeneratorModel::num_classes() const { return static_cast<int>(impl_->loaded.space.num_classes); }
std::vector<std::string> GeneratorModel::class_names() const { return impl_->loaded.class_names; }
int64_t GeneratorModel::grid() const {
  return static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(impl_->loaded.space.length))));
}
int64_t GeneratorModel::codebook_size() const { return impl_->loaded.space.codebook_size; }

at::Tensor GeneratorModel::sample(const SampleRequest& request) const {
  const auto& space = impl_->loaded.space;
  std::vector<int64_t> cond = request.classes;
  if (space.num_classes > 0) {
    SEQGAN_CHECK_HINT(!cond.empty(), "list one class id per image in SampleRequest::classes",
                      "GeneratorModel::sample: the model is class-conditional but no classes were requested");
    for (const int64_t c : cond)
      SEQGAN_CHECK_HINT(c >= 0 && c < space.num_classes, str("use class ids 0 to ", space.num_classes - 1),
                        "GeneratorModel::sample: class ", c, " is out of range");
  } else {
    SEQGAN_CHECK_HINT(cond.empty() && request.count > 0, "set SampleRequest::count and leave classes empty",
                      "GeneratorModel::sample: the model is unconditional");
    cond.assign(static_cast<size_t>(request.count), 0);
  }
  SEQGAN_CHECK_HINT(request.batch > 0, "set SampleRequest::batch > 0", "GeneratorModel::sample: batch ", request.batch);
  const SampleConfig settings = request.settings.value_or(impl_->loaded.config.sample);
  auto gen = make_generator(request.seed);
  const at::Tensor codes = sample_codes(*impl_->loaded.model, cond, request.batch, ar_options(settings),
                                        nar_options(settings), gen);
  return codes.view({codes.size(0), grid(), grid()});
}

}  // namespace seqgan
