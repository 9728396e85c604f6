// Typed configuration of every component, with the defaults of SPEC.md. One registry
// (src/config/fields.cpp) names every field once; JSON in/out, `--set a.b=v`, validation and the
// help text are all generated from it, so they cannot drift apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqgan {

// Where images come from and how they are prepared (SPEC section 6).
struct DataConfig {
  std::string dataset = "fashion-mnist";  // fashion-mnist | idx | image-folder | lmdb | shards
  std::string root = "/usr/share/datasets/fashion-mnist";
  std::string val_root;                   // image-folder, lmdb, shards: the held-out data (empty: none)
  std::string val_labels;                 // image-folder: labels of a flat val_root (ImageNet's layout)
  std::string class_name;                 // lmdb: the one class of every image (empty: unlabeled)
  std::string preprocess = "resize";      // resize (torchvision Resize + crop) | adm (center_crop_arr)
  std::string resize_filter = "bilinear"; // box | bilinear | bicubic | lanczos (PIL's filters)
  int channels = 3;
  int resolution = 256;
  int pad = 0;                            // constant padding before resizing (MNIST 28 -> 32)
  bool random_crop = true;
  bool hflip = true;
  int num_workers = 2;
  int prefetch = 4;
  bool skip_bad_files = false;
};

// The VQ tokenizer's encoder, codebook and decoder (SPEC section 2).
struct TokenizerConfig {
  int base_channels = 128;
  std::vector<int> channel_mult{1, 1, 2, 2, 4};
  int num_res_blocks = 2;         // per level
  int mid_res_blocks = 2;         // extra blocks at the lowest resolution (encoder end, decoder start)
  int code_dim = 256;
  int codebook_size = 1024;
  int norm_groups = 32;
  double norm_eps = 1e-6;
  bool maskgit_skip = true;       // 1x1 skip on the block output (MaskGIT) vs on the input
  int decoder_extra_res_blocks = 0;  // Table 1 "+Conv x2": 2
  int decoder_attn_pairs = 0;        // B&D pairs per decoder level; phase 2: 1; "+Attention x2": 2
  int attn_window = 8;
  int attn_heads = 1;
  // The image range the encoder's weights expect: "minus1_1", images as seqgan loads them;
  // "0_1", (x + 1) / 2 first, as MaskGIT's published tokenizer (tools/convert_maskgit_vqgan.py).
  std::string input_range = "minus1_1";
};

// Nearest-code quantiser and its regulariser (SPEC section 3).
struct QuantizerConfig {
  double beta = 0.25;             // commitment weight on the encoder term
  double entropy_gamma = 0.01;
  double entropy_tau = 1.0;
  int entropy_sign = -1;          // loss += sign * gamma * H(mean soft usage)
  double per_sample_entropy_gamma = 0.0;  // optional MaskGIT-style term: + gamma * mean_i H(P_i)
  double init_range = 0.0;        // codes start uniform in [-r, r]; 0: r = 1/K (VQGAN's choice)
  // "nearest": the plain codebook of SPEC section 3. "factorized": ViT-VQGAN's factorised,
  // L2-normalised codes: a linear map down to factor_dim, lookup of unit vectors by cosine
  // similarity, a linear map back up to code_dim (paper Table 5, "F&N").
  std::string kind = "nearest";
  int factor_dim = 32;
  // Periodic k-means re-estimation of the codebook (paper Table 5, "K-means"): every
  // kmeans_every phase-1 steps (0: never) until step kmeans_until (0: to the end), kmeans_iters
  // Lloyd iterations on the batch's encoder outputs, starting from the current codes; a code
  // that attracts no output is moved onto a random one.
  int kmeans_every = 0;
  int kmeans_until = 0;
  int kmeans_iters = 10;
};

// Semantic-enhanced perceptual loss (paper Eq. 3).
struct PerceptualConfig {
  std::string network = "classifier";  // vgg16 | classifier
  std::string weights;                 // safetensors file of the loss network (required)
  double alpha = 1.0;                  // semantic ratio
  double weight = 1.0;
  bool lpips_normalize = false;
  std::vector<std::string> low_taps{"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"};
  std::vector<std::string> sem_taps{"relu5_3", "logit"};
};

// StyleGAN2-style discriminator and the adversarial objective.
struct DiscriminatorConfig {
  int base_channels = 64;
  int max_channels = 512;
  int mbstd_group = 4;
  double r1_gamma = 10.0;
  int r1_interval = 16;
  double adv_weight = 0.1;
  int64_t start_iter = 0;
  bool adaptive_weight = false;   // VQGAN's gradient-norm ratio instead of the fixed weight
};

// The training settings of one tokenizer phase: phase 1 reads `train_tokenizer`, phase 2
// `phase2.train` (its keys are phase2.lr, phase2.batch_size, ...), and nothing else.
struct TokenizerTrainConfig {
  int64_t batch_size = 256;
  int64_t iterations = 500000;
  // The optimiser (Adam) and its learning-rate schedule.
  double lr = 1e-4;
  double lr_end = 5e-5;
  std::string lr_schedule = "cosine";  // constant | cosine | linear
  int64_t warmup = 0;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double d_lr = 1e-4;
  double l1_weight = 1.0;
  int log_every = 50;
  int image_every = 1000;
  int checkpoint_every = 5000;
  int max_nonfinite = 10;
  bool autocast_bf16 = true;           // CUDA only
  double ema_decay = 0.0;              // EMA of the tokenizer's weights (0: off)
};

// Phase 2: decoder-only fine-tuning with B&D attention.
struct Phase2Config {
  TokenizerTrainConfig train = paper_phase2_training();
  double alpha = 0.0;  // the semantic ratio of phase 2's perceptual loss (phase 1: perceptual.alpha)
  int attn_pairs = 1;
  bool fresh_discriminator = false;

  static TokenizerTrainConfig paper_phase2_training() {
    TokenizerTrainConfig t;
    t.batch_size = 128;
    t.iterations = 200000;
    t.lr = 5e-5;
    t.lr_end = 5e-5;
    t.beta1 = 0.5;
    t.beta2 = 0.9;
    return t;
  }
};

// The generative transformer (SPEC section 4); AR and NAR share it.
struct TransformerConfig {
  int layers = 24;
  int width = 768;
  int heads = 16;
  int mlp = 3072;
  double dropout = 0.1;
  int num_classes = 1000;    // 0: unconditional (one start token)
};

struct TransformerTrainConfig {
  int64_t batch_size = 256;
  int64_t iterations = 1500000;
  double lr = 1e-4;
  double lr_end = 5e-6;
  std::string lr_schedule = "exponential";  // constant | cosine | linear | exponential
  int64_t warmup = 0;
  int64_t decay_start = 80000;
  double beta1 = 0.9;
  double beta2 = 0.96;
  double weight_decay = 1e-2;
  double label_smoothing = 0.0;
  double val_fraction = 0.02;
  int log_every = 50;
  int val_every = 1000;
  int checkpoint_every = 5000;
  int max_nonfinite = 10;
  bool autocast_bf16 = true;
  double class_dropout = 0.1;  // class-conditional: share of rows trained on the null condition (guidance)
  double ema_decay = 0.0;      // EMA of the weights (0: off)
};

struct SampleConfig {
  double temperature = 1.0;   // AR: logits / T
  int top_k = 0;              // AR: keep the k most likely codes (0: all)
  double top_p = 0.92;        // AR: keep the smallest set of codes with mass >= p (1: all)
  int steps = 12;             // NAR
  double sample_temperature = 0.45;  // NAR
  double choice_temperature = 4.5;   // NAR
  double guidance = 1.0;                     // classifier-free guidance scale (1: plain conditional)
  std::string guidance_schedule = "constant";  // constant | linear | cosine
  double guidance_power = 2.75;              // cosine: exponent of the power-cosine ramp
  double accept_fraction = 1.0;              // rejection sampling: keep the best share (1: off)
  double accept_threshold = 0.0;             // rejection sampling: keep p(class) >= this (0: off)
  int max_draws = 8;                         // rejection by threshold: draw at most this many times the count
};

struct EvalConfig {
  std::string feature_network = "classifier";  // inception | classifier
  std::string feature_weights;
  int batch_size = 100;
  int64_t num_samples = 50000;
  int is_splits = 10;
  std::string inception_resize = "pytorch-fid";  // pytorch-fid | adm: how the InceptionV3 reaches 299x299
  std::string lpips_weights;  // LPIPS (VGG, v0.1) weights from tools/convert_lpips.py; empty: no LPIPS
};

// The whole resolved configuration of a run; written into the run directory and checkpoints.
struct Config {
  std::string preset = "paper";
  uint64_t seed = 0;
  int threads = 0;           // 0: all cores
  std::string device = "auto";  // auto | cpu | cuda
  DataConfig data;
  TokenizerConfig tokenizer;
  QuantizerConfig quantizer;
  PerceptualConfig perceptual;
  DiscriminatorConfig discriminator;
  TokenizerTrainConfig train_tokenizer;
  Phase2Config phase2;
  TransformerConfig transformer;
  TransformerTrainConfig train_ar;
  TransformerTrainConfig train_nar;
  SampleConfig sample;
  EvalConfig eval;
};

// One entry of the option registry.
struct FieldInfo {
  std::string path;        // "tokenizer.base_channels"
  std::string type;        // int | float | bool | string | int-list | string-list
  std::string value;       // current value, as JSON text
  std::string help;
  std::string allowed;     // "[1, 4096]" or "cpu | cuda | auto"; empty if free
};

std::vector<std::string> preset_names();
// Throws seqgan::Error naming the closest preset when `name` is unknown.
Config make_preset(const std::string& name);

std::vector<FieldInfo> config_fields(const Config& config);
// `path` like "tokenizer.base_channels", value in JSON or plain text ("[1,2]", "true", "cosine").
void config_set(Config& config, const std::string& path, const std::string& value);
// Applies "a.b=value" (the form of --set).
void config_apply_override(Config& config, const std::string& assignment);
// A --set list as it applies: each key once, where it first appears, with the value it is set to
// last ("a=1 b=2 a=3" gives "a=3 b=2").
std::vector<std::string> last_assignments(const std::vector<std::string>& assignments);

std::string config_to_json(const Config& config, int indent = 2);
// Strict: unknown keys are errors naming the closest valid key; values are validated.
// A "preset" key selects the base the remaining keys override.
Config config_from_json(const std::string& text, const std::string& where = "<json>");
Config config_from_file(const std::string& path);

// Checks every value against its allowed range and the cross-field rules; throws one error listing
// every problem.
void validate(const Config& config);

// Derived quantities.
int tokenizer_downsample_factor(const TokenizerConfig& t);   // 2^(levels-1)
int latent_size(const Config& config);                       // resolution / f
int transformer_vocab_size(const Config& config);            // K + conditions + mask
int transformer_seq_len(const Config& config);               // latent_size^2

}  // namespace seqgan
