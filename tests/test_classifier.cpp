// The small classifiers: architecture JSON, taps of both kinds, checkpoints (round trip, wrong
// architecture, wrong kind) and the trainer on a tiny synthetic two-class data set.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <random>

#include "remove_tree.h"
#include "features/classifier.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "train/classifier_trainer.h"

namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const seqgan::Error& e) {
    return e.what();
  }
  return "<no seqgan::Error thrown>";
}

#define EXPECT_CONTAINS(text, part) EXPECT_NE((text).find(part), std::string::npos) << "expected '" << (part) << "' in:\n" << (text)

using seqgan::test::TempDir;

seqgan::ClassifierArch small_arch(const std::string& kind) {
  seqgan::ClassifierArch a;
  a.kind = kind;
  a.width = 4;
  a.num_classes = 2;
  a.resolution = 16;
  return a;
}

// Grey 16x16 stripes: class 0 horizontal, class 1 vertical, random phase, period and noise.
class Stripes : public seqgan::Dataset {
 public:
  Stripes(int64_t n, uint64_t seed, int num_classes = 2) : n_(n), seed_(seed), classes_(num_classes) {}
  int64_t size() const override { return n_; }
  seqgan::RawExample load(int64_t index) const override {
    check_index(index);
    std::mt19937_64 rng(seed_ * 1000003 + static_cast<uint64_t>(index));
    const int label = static_cast<int>(index % 2);
    const int period = 3 + static_cast<int>(rng() % 4), phase = static_cast<int>(rng() % 8);
    std::normal_distribution<double> noise(0.0, 40.0);
    seqgan::Image im(16, 16, 1);
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        const int t = (label == 0 ? y : x) + phase;
        const double v = ((t / period) % 2 ? 200.0 : 55.0) + noise(rng);
        im.at(y, x, 0) = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    return {im, classes_ == 0 ? -1 : label};
  }
  int num_classes() const override { return classes_; }
  std::vector<std::string> class_names() const override {
    return classes_ == 0 ? std::vector<std::string>{} : std::vector<std::string>{"horizontal", "vertical"};
  }
  int channels() const override { return 1; }
  std::string description() const override { return "stripes"; }

 private:
  int64_t n_;
  uint64_t seed_;
  int classes_;
};

}  // namespace

TEST(ClassifierArch, JsonRoundTripAndStrictParsing) {
  seqgan::ClassifierArch a = small_arch("resnet");
  a.channels = 3;
  EXPECT_EQ(seqgan::ClassifierArch::from_json(a.to_json()), a);
  EXPECT_CONTAINS(error_of([] {
                    seqgan::ClassifierArch::from_json(
                        R"({"kind":"vgg","channels":1,"width":8,"num_classes":10,"resolution":32,"depth":3})");
                  }),
                  "unknown key 'depth'");
  const std::string e = error_of([] { seqgan::ClassifierArch::from_json(R"({"kind":"vgg","channels":"1","width":8})"); });
  EXPECT_CONTAINS(e, "'channels' must be an integer");
  EXPECT_CONTAINS(e, "missing key 'num_classes'");
  EXPECT_CONTAINS(e, "missing key 'resolution'");
  const std::string v = error_of([] {
    seqgan::ClassifierArch::from_json(R"({"kind":"vit","channels":2,"width":8,"num_classes":10,"resolution":8})");
  });
  EXPECT_CONTAINS(v, "kind must be vgg | resnet, found 'vit'");
  EXPECT_CONTAINS(v, "channels must be 1 or 3, found 2");
  EXPECT_CONTAINS(v, "resolution must be >= 16");
}

TEST(Classifier, BothKindsExposeTheStandardTaps) {
  for (const std::string kind : {"vgg", "resnet"}) {
    seqgan::ClassifierArch a = small_arch(kind);
    a.num_classes = 7;
    seqgan::Classifier net(a);
    net.eval();
    torch::NoGradGuard no_grad;
    const auto taps = net.taps(torch::rand({2, 1, 32, 32}) * 2 - 1, net.tap_names());
    ASSERT_EQ(taps.size(), 7u) << kind;
    EXPECT_EQ(taps.at("relu1_2").sizes(), at::IntArrayRef({2, 4, 32, 32})) << kind;
    EXPECT_EQ(taps.at("relu2_2").sizes(), at::IntArrayRef({2, 8, 16, 16})) << kind;
    EXPECT_EQ(taps.at("relu3_3").sizes(), at::IntArrayRef({2, 16, 8, 8})) << kind;
    EXPECT_EQ(taps.at("relu4_3").sizes(), at::IntArrayRef({2, 32, 4, 4})) << kind;
    EXPECT_EQ(taps.at("relu5_3").sizes(), at::IntArrayRef({2, 32, 2, 2})) << kind;
    EXPECT_EQ(taps.at("features").sizes(), at::IntArrayRef({2, 32})) << kind;
    EXPECT_EQ(taps.at("logit").sizes(), at::IntArrayRef({2, 7})) << kind;
    EXPECT_TRUE(taps.at("relu5_3").min().item<float>() >= 0) << kind;  // after the ReLU
    EXPECT_TRUE(torch::allclose(net.forward(torch::zeros({1, 3, 16, 16})),
                                net.forward(torch::zeros({1, 1, 16, 16}))))  // RGB -> luma
        << kind;
    EXPECT_CONTAINS(error_of([&] { net.taps(torch::zeros({1, 1, 8, 8}), {"relu1_2"}); }), "H, W >= 16");
  }
  // Different architectures, different state dicts: the loss and evaluation networks never match.
  EXPECT_NE(seqgan::state_dict(seqgan::Classifier(small_arch("vgg"))).count("stem.0.weight"), 1u);
  EXPECT_EQ(seqgan::state_dict(seqgan::Classifier(small_arch("resnet"))).count("stem.0.weight"), 1u);
}

TEST(Classifier, CheckpointRoundTrip) {
  TempDir tmp;
  for (const std::string kind : {"vgg", "resnet"}) {
    torch::manual_seed(5);
    seqgan::Classifier net(small_arch(kind));
    // Batch norm statistics are buffers and must survive the round trip too.
    net.train();
    {
      torch::NoGradGuard no_grad;
      net.forward(torch::randn({4, 1, 16, 16}));
    }
    net.eval();
    const std::string path = tmp.file(kind + ".safetensors");
    seqgan::save_classifier(path, net, R"({"epochs":1})", {{"test_accuracy", "0.5"}});
    EXPECT_EQ(seqgan::read_classifier_arch(path), net.arch());
    const seqgan::CheckpointMeta meta = seqgan::read_checkpoint_meta(path);
    EXPECT_EQ(meta.kind, "classifier");
    EXPECT_EQ(meta.extra.at("test_accuracy"), "0.5");
    EXPECT_CONTAINS(meta.config_json, R"("train":{"epochs":1})");

    auto loaded = seqgan::load_classifier(path, kind);
    EXPECT_FALSE(loaded->is_training());
    const at::Tensor x = torch::randn({3, 1, 20, 20});
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(loaded->forward(x), net.forward(x))) << kind;
    const auto other = kind == "vgg" ? "resnet" : "vgg";
    EXPECT_CONTAINS(error_of([&] { seqgan::load_classifier(path, other); }),
                    std::string("expected a classifier of kind '") + other + "', found '" + kind + "'");
  }
}

TEST(Classifier, CheckpointWithWrongArchIsRejected) {
  TempDir tmp;
  seqgan::Classifier narrow(small_arch("vgg"));
  // Weights of a width-4 network under metadata that claims width 8.
  seqgan::ClassifierArch claimed = small_arch("vgg");
  claimed.width = 8;
  seqgan::CheckpointMeta meta;
  meta.kind = "classifier";
  meta.config_json = R"({"arch":)" + claimed.to_json() + "}";
  seqgan::save_checkpoint(tmp.file("lie.safetensors"), narrow, meta);
  const std::string e = error_of([&] { seqgan::load_classifier(tmp.file("lie.safetensors")); });
  EXPECT_CONTAINS(e, tmp.file("lie.safetensors"));
  EXPECT_CONTAINS(e, "tensor 'stage1.0.weight' has wrong shape; expected [8, 1, 3, 3], got [4, 1, 3, 3]");
  EXPECT_CONTAINS(e, "tensor 'head.weight' has wrong shape");

  meta.config_json = R"({"arch":{"kind":"vgg","width":4}})";
  seqgan::save_checkpoint(tmp.file("partial.safetensors"), narrow, meta);
  EXPECT_CONTAINS(error_of([&] { seqgan::load_classifier(tmp.file("partial.safetensors")); }), "missing key 'channels'");

  meta.kind = "tokenizer";
  meta.config_json = "{}";
  seqgan::save_checkpoint(tmp.file("tok.safetensors"), narrow, meta);
  EXPECT_CONTAINS(error_of([&] { seqgan::load_classifier(tmp.file("tok.safetensors")); }),
                  "expected a 'classifier' checkpoint, found kind 'tokenizer'");
}

TEST(ClassifierTrainer, LearnsTwoClassStripesAndWritesACheckpoint) {
  TempDir tmp;
  Stripes train(512, 1), test(256, 2);
  seqgan::ClassifierTrainOptions o;
  o.arch = small_arch("vgg");
  o.arch.channels = 0;     // from the data
  o.arch.num_classes = 0;  // from the data
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 5e-3;
  o.warmup_steps = 5;
  o.threads = 2;
  o.log_every = 10;
  o.metrics_path = tmp.file("metrics.jsonl");
  const auto level = seqgan::log_level();
  seqgan::set_log_level(seqgan::LogLevel::Warn);
  const seqgan::ClassifierResult r = seqgan::train_classifier(o, train, test, tmp.file("cls.safetensors"));
  seqgan::set_log_level(level);

  EXPECT_EQ(r.arch.channels, 1);
  EXPECT_EQ(r.arch.num_classes, 2);
  EXPECT_EQ(r.steps, 2 * 512 / 32);
  EXPECT_GE(r.test_accuracy, 0.95);
  EXPECT_GE(r.train_accuracy, 0.9);
  ASSERT_TRUE(fs::exists(r.path));
  EXPECT_TRUE(fs::file_size(o.metrics_path) > 0);

  // The checkpoint reproduces the reported accuracy and records it.
  auto loaded = seqgan::load_classifier(r.path, "vgg");
  EXPECT_EQ(loaded->arch(), r.arch);
  EXPECT_DOUBLE_EQ(seqgan::classifier_accuracy(*loaded, test, o), r.test_accuracy);
  EXPECT_EQ(std::stod(seqgan::read_checkpoint_meta(r.path).extra.at("test_accuracy")), r.test_accuracy);
}

TEST(ClassifierTrainer, RefusesDataItCannotLearnFrom) {
  TempDir tmp;
  seqgan::ClassifierTrainOptions o;
  o.arch = small_arch("vgg");
  o.threads = 2;
  Stripes unlabeled(64, 1, /*num_classes=*/0), labeled(64, 1), tiny(8, 1);
  EXPECT_CONTAINS(error_of([&] { seqgan::train_classifier(o, unlabeled, labeled, tmp.file("a")); }), "a classifier needs labels");
  EXPECT_CONTAINS(error_of([&] { seqgan::train_classifier(o, tiny, labeled, tmp.file("b")); }),
                  "8 samples are fewer than one batch of 128");
  EXPECT_CONTAINS(error_of([&] { seqgan::train_classifier(o, labeled, labeled, tmp.file("no/such/dir/c")); }),
                  "does not exist");
  EXPECT_FALSE(fs::exists(tmp.file("a")));
  EXPECT_FALSE(fs::exists(tmp.file("b")));
}
