// Named presets: the paper's ImageNet 256 set-up (supplement Tables 1-4) and the small CPU default.
#include <functional>
#include <map>

#include "seqgan/config.h"
#include "seqgan/error.h"

namespace seqgan {
namespace {

Config paper() {
  Config c;  // the struct defaults are the paper's ImageNet values
  c.preset = "paper";
  c.data.dataset = "image-folder";
  c.data.root = "data/imagenet/train";
  c.data.val_root = "data/imagenet/val";
  c.perceptual.network = "vgg16";
  c.perceptual.weights = "weights/vgg16.safetensors";
  c.eval.feature_network = "inception";
  c.eval.feature_weights = "weights/pt_inception.safetensors";
  c.train_nar = c.train_ar;
  c.train_nar.lr_schedule = "linear";
  c.train_nar.decay_start = 50000;
  c.train_nar.lr_end = 0.0;
  c.train_nar.label_smoothing = 0.1;
  return c;
}

Config paper_large() {
  Config c = paper();
  c.preset = "paper-large";
  c.transformer.width = 1024;
  c.transformer.mlp = 4096;
  return c;
}

// The paper's unconditional data sets (supplement Tables 3 and 4): the tokenizer and transformers
// of the ImageNet preset, without classes, with each data set's batch sizes, iterations and
// sampling settings. Where a table cell spans several data sets it is read as spanning them.
Config unconditional(const std::string& name, const std::string& dataset, const std::string& root,
                     const std::string& val_root, int64_t batch1, int64_t iters1, int64_t batch2,
                     int64_t batch_transformer) {
  Config c = paper();
  c.preset = name;
  c.data.dataset = dataset;
  c.data.root = root;
  c.data.val_root = val_root;
  c.transformer.num_classes = 0;
  c.train_tokenizer.batch_size = batch1;
  c.train_tokenizer.iterations = iters1;
  c.phase2.train.batch_size = batch2;
  for (auto* t : {&c.train_ar, &c.train_nar}) {
    t->batch_size = batch_transformer;
    t->iterations = 500000;
  }
  c.sample.top_p = 0.98;
  c.sample.sample_temperature = 0.65;
  return c;
}

// FFHQ 256 (60,000 train / 10,000 validation images) as folders of images: cosine decay of the
// tokenizer's learning rate like ImageNet.
Config ffhq() { return unconditional("ffhq", "image-folder", "data/ffhq/train", "data/ffhq/val", 64, 300000, 32, 32); }

// LSUN from its official LMDB export (no validation split): one epoch or less of phase 1 at a
// constant 5e-5.
Config lsun(const std::string& name, const std::string& category, int64_t batch1, int64_t iters1, int64_t batch2,
            int64_t batch_transformer) {
  Config c = unconditional(name, "lmdb", "data/lsun/" + category + "_train_lmdb", "", batch1, iters1, batch2,
                           batch_transformer);
  c.train_tokenizer.lr = 5e-5;
  c.train_tokenizer.lr_end = 5e-5;
  c.train_tokenizer.lr_schedule = "constant";
  return c;
}

Config lsun_church() { return lsun("lsun-church", "church_outdoor", 32, 4000, 32, 64); }
Config lsun_bedroom() { return lsun("lsun-bedroom", "bedroom", 64, 48000, 64, 256); }
Config lsun_cat() { return lsun("lsun-cat", "cat", 64, 26000, 64, 256); }

// Fashion-MNIST, 28x28 padded to 32x32, on a 2-core CPU.
Config fmnist() {
  Config c = paper();
  c.preset = "fmnist";
  c.data.dataset = "fashion-mnist";
  c.data.root = "/usr/share/datasets/fashion-mnist";
  c.data.val_root = "";
  c.data.channels = 1;
  c.data.resolution = 32;
  c.data.pad = 2;
  c.data.random_crop = false;  // the garments are centred; crops would cut them
  c.data.hflip = false;        // keeps class-conditional samples comparable to the data
  // Three levels (f = 4) give an 8x8 latent grid: 64 tokens keep the transformers fast on a CPU
  // while each code still covers a 4x4 patch, about one stroke of a garment's outline.
  c.tokenizer.base_channels = 32;
  c.tokenizer.channel_mult = {1, 2, 2};
  c.tokenizer.num_res_blocks = 1;
  c.tokenizer.mid_res_blocks = 1;
  c.tokenizer.norm_groups = 8;
  // K = 256 codes of dimension 32: enough for grey 4x4 patches, few enough that every code is
  // visited many times per epoch, so usage is a meaningful figure.
  c.tokenizer.code_dim = 32;
  c.tokenizer.codebook_size = 256;
  c.tokenizer.attn_window = 4;
  // Codes start at the scale of the encoder's outputs (about 0.5 per channel at initialisation).
  // With VQGAN's +-1/K every feature is almost equidistant from every code, the tau = 1 soft usage
  // is uniform and the entropy regulariser has no gradient until the codes have drifted out,
  // which takes longer than this preset trains.
  c.quantizer.init_range = 0.5;
  c.perceptual.network = "classifier";
  c.perceptual.weights = "runs/fmnist/classifier-loss/classifier.safetensors";
  // A narrow discriminator (16 channels at 32x32): at 32 it costs more than the tokenizer itself.
  c.discriminator.base_channels = 16;
  c.discriminator.max_channels = 128;
  // Half of the steps shape the codes with L1 + perceptual + VQ terms alone, then the GAN sharpens.
  c.discriminator.start_iter = 1500;
  // Batch 32: more steps for the same minutes; 32 x 64 = 2048 positions still estimate the
  // usage of 256 codes well for the regulariser.
  c.train_tokenizer.batch_size = 32;
  c.train_tokenizer.iterations = 3000;
  c.train_tokenizer.lr = 2e-4;
  c.train_tokenizer.lr_end = 1e-4;
  c.train_tokenizer.d_lr = 2e-4;
  c.train_tokenizer.log_every = 50;
  c.train_tokenizer.image_every = 500;
  c.train_tokenizer.checkpoint_every = 500;
  c.phase2.train.batch_size = 32;
  // Phase 2 fine-tunes only the decoder (plus the new attention): a few hundred steps suffice.
  c.phase2.train.iterations = 500;
  c.phase2.train.lr = 1e-4;
  c.phase2.train.lr_end = 1e-4;
  c.phase2.train.d_lr = 2e-4;
  c.phase2.train.log_every = 50;
  c.phase2.train.image_every = 500;
  c.phase2.train.checkpoint_every = 500;
  // 64 tokens of K = 256: a small transformer (0.9M parameters) learns them in minutes on a CPU.
  c.transformer.layers = 4;
  c.transformer.width = 128;
  c.transformer.heads = 4;
  c.transformer.mlp = 512;
  c.transformer.dropout = 0.1;
  c.transformer.num_classes = 10;
  for (auto* t : {&c.train_ar, &c.train_nar}) {
    t->batch_size = 64;
    t->iterations = 1500;
    t->lr = 1e-3;
    t->warmup = 100;
    t->decay_start = 750;
    t->lr_end = 5e-5;
    t->val_every = 250;
    t->checkpoint_every = 500;
  }
  c.train_nar.lr_end = 0.0;
  c.sample.top_p = 0.98;
  c.sample.sample_temperature = 0.65;
  c.eval.feature_network = "classifier";
  c.eval.feature_weights = "runs/fmnist/classifier-eval/classifier.safetensors";
  c.eval.num_samples = 10000;
  c.eval.batch_size = 32;  // CPU: small batches keep the activations in cache (3x faster than 256 here)
  return c;
}

const std::map<std::string, std::function<Config()>>& presets() {
  static const std::map<std::string, std::function<Config()>> table{
      {"paper", paper},         {"paper-large", paper_large},   {"fmnist", fmnist},
      {"ffhq", ffhq},           {"lsun-church", lsun_church},   {"lsun-bedroom", lsun_bedroom},
      {"lsun-cat", lsun_cat}};
  return table;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& [name, _] : presets()) out.push_back(name);
  return out;
}

Config make_preset(const std::string& name) {
  const auto it = presets().find(name);
  if (it == presets().end()) {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error(str("unknown preset '", name, "'"), str("presets are: ", names));
  }
  return it->second();
}

}  // namespace seqgan
