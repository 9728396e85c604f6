// Classifier training loop; see classifier_trainer.h.
#include "train/classifier_trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <tuple>
#include <utility>

#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"

namespace seqgan {
namespace {

using Clock = std::chrono::steady_clock;

// The loader wants shared ownership; the caller keeps the data set alive for the whole call.
std::shared_ptr<const Dataset> borrow(const Dataset& data) {
  return std::shared_ptr<const Dataset>(&data, [](const Dataset*) {});
}

TransformOptions eval_transform(const ClassifierArch& arch, int pad) {
  TransformOptions t;
  t.resolution = arch.resolution;
  t.channels = arch.channels;
  t.pad = pad;
  t.center_crop = true;
  return t;
}

// Random translation by up to `shift` pixels (replicated borders) and random horizontal flips,
// per sample, driven only by `rng`.
at::Tensor augment(const at::Tensor& images, int shift, bool hflip, std::mt19937_64& rng) {
  at::Tensor x = images;
  const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  if (shift > 0) {
    namespace F = torch::nn::functional;
    const at::Tensor padded =
        F::pad(x, F::PadFuncOptions({shift, shift, shift, shift}).mode(torch::kReplicate));  // [B, C, H+2s, W+2s]
    std::uniform_int_distribution<int64_t> offset(0, 2 * shift);
    std::vector<at::Tensor> crops;
    crops.reserve(b);
    for (int64_t i = 0; i < b; ++i)
      crops.push_back(padded[i].narrow(1, offset(rng), h).narrow(2, offset(rng), w));
    x = torch::stack(crops);  // [B, C, H, W]
  }
  if (hflip) {
    std::bernoulli_distribution coin(0.5);
    std::vector<uint8_t> flip(b);
    for (auto& f : flip) f = coin(rng);
    const at::Tensor mask = torch::from_blob(flip.data(), {b, 1, 1, 1}, torch::kUInt8).to(torch::kBool).to(x.device());
    x = torch::where(mask, x.flip({3}), x);
  }
  return x;
}

double lr_at(const ClassifierTrainOptions& o, int64_t step, int64_t total) {
  const int64_t warmup = std::min(o.warmup_steps, total / 10);
  if (step < warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double t = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  return 0.5 * o.lr * (1 + std::cos(M_PI * t));
}

void check_labels(const at::Tensor& labels, int num_classes, const Dataset& data) {
  const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  SEQGAN_CHECK_HINT(lo >= 0 && hi < num_classes, "train on a labelled data set whose labels are 0 .. num_classes - 1",
                    data.description(), ": expected labels in [0, ", num_classes, "), found one in [", lo, ", ", hi, "]");
}

std::string fixed(double v, int digits) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

}  // namespace

std::string ClassifierTrainOptions::to_json() const {
  return nlohmann::json{{"epochs", epochs},   {"batch_size", batch_size},     {"lr", lr},
                        {"warmup_steps", warmup_steps}, {"weight_decay", weight_decay}, {"shift", shift},
                        {"hflip", hflip},     {"pad", pad},                   {"seed", seed}}
      .dump();
}

double classifier_accuracy(Classifier& model, const Dataset& data, const ClassifierTrainOptions& options) {
  LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.num_workers = options.num_workers;
  lo.shuffle = false;
  lo.drop_last = false;
  Loader loader(borrow(data), lo, eval_transform(model.arch(), options.pad));
  const torch::Device device = torch::Device(resolve_device(options.device));
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  int64_t correct = 0, total = 0;
  Batch batch;
  while (loader.next(batch)) {
    check_labels(batch.labels, model.arch().num_classes, data);
    const at::Tensor pred = model.forward(batch.images.to(device)).argmax(1).cpu();  // [B]
    correct += pred.eq(batch.labels).sum().item<int64_t>();
    total += batch.labels.size(0);
  }
  model.train(was_training);
  SEQGAN_CHECK_HINT(total > 0, "evaluate on a non-empty data set", data.description(), ": the data set is empty");
  return static_cast<double>(correct) / static_cast<double>(total);
}

namespace {

// The architecture the options and the data resolve to, after checking that the data sets are
// labelled, the options in range and the output directory there.
ClassifierArch resolve_arch(const ClassifierTrainOptions& options, const Dataset& train, const Dataset& test,
                            const std::string& out_path) {
  SEQGAN_CHECK_HINT(train.num_classes() > 0 && test.num_classes() > 0,
                    "a classifier needs labels: use a data set with class sub-folders or label files",
                    "expected labelled data sets, found ", train.num_classes(), " classes in ", train.description(),
                    " and ", test.num_classes(), " in ", test.description());
  SEQGAN_CHECK(options.epochs >= 1 && options.batch_size >= 2 && options.lr > 0 && options.shift >= 0 &&
                   options.log_every >= 1,
               "expected epochs >= 1, batch_size >= 2, lr > 0, shift >= 0, log_every >= 1; found ", options.epochs,
               ", ", options.batch_size, ", ", options.lr, ", ", options.shift, ", ", options.log_every);
  ClassifierArch arch = options.arch;
  if (arch.channels == 0) arch.channels = train.channels() == 1 ? 1 : 3;
  if (arch.num_classes == 0) arch.num_classes = train.num_classes();
  SEQGAN_CHECK_HINT(arch.num_classes >= train.num_classes(), "set the classifier's num_classes to 0 (from the data)",
                    "the classifier has ", arch.num_classes, " classes, the training set ", train.num_classes());
  const std::filesystem::path parent = std::filesystem::path(out_path).parent_path();
  SEQGAN_CHECK_HINT(parent.empty() || std::filesystem::is_directory(parent), "create the directory first",
                    "the output directory '", parent.string(), "' of '", out_path, "' does not exist");
  SEQGAN_CHECK_HINT(train.size() >= options.batch_size, "lower batch_size", train.description(), ": ", train.size(),
                    " samples are fewer than one batch of ", options.batch_size);
  return arch;
}

// One epoch's training loop over the classifier, with its state across epochs.
struct ClassifierRun {
  const ClassifierTrainOptions& options;
  const Dataset& train;
  Classifier& model;
  torch::optim::AdamW& optimizer;
  Loader& loader;
  MetricsWriter& metrics;
  Progress& progress;
  torch::Device device;
  int64_t per_epoch, total;
  std::mt19937_64 rng;
  int64_t step = 0;

  // Mean loss and accuracy of the epoch's batches (augmented, in train mode).
  std::pair<double, double> epoch(int epoch) {
    loader.start_epoch(epoch);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    const auto epoch_start = Clock::now();
    Batch batch;
    while (loader.next(batch)) {
      check_labels(batch.labels, model.arch().num_classes, train);
      const double lr = lr_at(options, step, total);
      for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

      // Channels-last: the CPU (oneDNN) convolutions run about twice as fast at these widths.
      at::Tensor x = augment(batch.images, options.shift, options.hflip, rng).to(device);
      x = x.contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor labels = batch.labels.to(device);
      const at::Tensor logits = model.forward(x);  // [B, num_classes]
      const at::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
      optimizer.zero_grad();
      loss.backward();
      optimizer.step();

      const double loss_value = loss.item<double>();
      SEQGAN_CHECK_HINT(std::isfinite(loss_value), "lower the learning rate", "the training loss became ", loss_value,
                        " at step ", step);
      loss_sum += loss_value * static_cast<double>(labels.size(0));
      correct += logits.argmax(1).eq(labels).sum().item<int64_t>();
      seen += labels.size(0);
      ++step;
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - epoch_start).count() /
                        static_cast<double>(step - static_cast<int64_t>(epoch) * per_epoch);
      progress.update(step, str("epoch ", epoch + 1, " | loss ", fixed(loss_sum / seen, 4), " | acc ",
                                fixed(static_cast<double>(correct) / seen, 4), " | ", fixed(ms, 0), " ms/it"));
      if (step % options.log_every == 0 || step == total)
        metrics.write("classifier", step, {{"loss", loss_value}, {"lr", lr}, {"ms_per_it", ms}});
    }
    return {loss_sum / static_cast<double>(seen), static_cast<double>(correct) / static_cast<double>(seen)};
  }
};

}  // namespace

ClassifierResult train_classifier(const ClassifierTrainOptions& options, Dataset& train, Dataset& test,
                                  const std::string& out_path) {
  const auto start = Clock::now();
  const ClassifierArch arch = resolve_arch(options, train, test, out_path);
  set_threads(options.threads);
  const torch::Device device = torch::Device(resolve_device(options.device));
  torch::manual_seed(options.seed);
  auto model = std::make_shared<Classifier>(arch);
  model->to(device);
  model->train();

  LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.num_workers = options.num_workers;
  lo.shuffle = true;
  lo.drop_last = true;  // batch norm statistics of a tiny last batch are noise
  lo.seed = options.seed;
  Loader loader(borrow(train), lo, eval_transform(arch, options.pad));
  const int64_t per_epoch = loader.batches_per_epoch();
  const int64_t total = per_epoch * options.epochs;
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(options.lr).weight_decay(options.weight_decay));
  MetricsWriter metrics = options.metrics_path.empty() ? MetricsWriter() : MetricsWriter(options.metrics_path);
  log_info(str("train-classifier: ", model->description(), ", ", train.size(), " training images (",
               train.description(), "), ", options.epochs, " epochs of ", per_epoch, " steps, ", device.str()));

  Progress progress("train-classifier", total);
  ClassifierRun run{options, train, *model, optimizer, loader, metrics, progress, device, per_epoch, total,
                    std::mt19937_64(options.seed ^ 0x9e3779b97f4a7c15ULL)};
  ClassifierResult result;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    std::tie(result.train_loss, result.train_accuracy) = run.epoch(epoch);
    log_info(str("epoch ", epoch + 1, "/", options.epochs, " | loss ", fixed(result.train_loss, 4), " | train acc ",
                 fixed(result.train_accuracy, 4), " | ",
                 fixed(std::chrono::duration<double>(Clock::now() - epoch_start).count(), 1), " s"));
    metrics.write("classifier_epoch", run.step, {{"loss", result.train_loss}, {"accuracy", result.train_accuracy}});
  }
  progress.finish();

  model->eval();
  result.test_accuracy = classifier_accuracy(*model, test, options);
  metrics.write("classifier_test", run.step, {{"accuracy", result.test_accuracy}});
  std::map<std::string, std::string> extra{{"test_accuracy", str(result.test_accuracy)},
                                           {"train_data", train.description()},
                                           {"test_data", test.description()}};
  if (!options.role.empty()) extra["role"] = options.role;
  save_classifier(out_path, *model, options.to_json(), extra);
  result.arch = arch;
  result.steps = run.step;
  result.path = out_path;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  log_info(str("train-classifier: test accuracy ", fixed(100 * result.test_accuracy, 2), "% on ", test.size(),
               " images; wrote ", out_path, " (", fixed(result.seconds, 0), " s)"));
  return result;
}

}  // namespace seqgan
