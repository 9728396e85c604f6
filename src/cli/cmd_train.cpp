// `seqgan train-classifier` and `seqgan train-tokenizer`.
#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "cli/signals.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "train/classifier_trainer.h"
#include "train/distributed.h"
#include "train/run.h"
#include "train/tokenizer_trainer.h"

namespace seqgan::cli {
namespace {

int run_train_classifier(const Args& args) {
  const Config config = load_config(args);
  const std::string role = args.get("--role");
  if (role != "loss" && role != "eval") throw UsageError("--role must be loss or eval, got '" + role + "'");
  ClassifierTrainOptions o;
  // The evaluation network differs from the loss network in architecture and seed (SPEC 5).
  o.arch.kind = args.has("--kind") ? args.get("--kind") : (role == "loss" ? "vgg" : "resnet");
  o.arch.width = static_cast<int>(args.get_int("--width"));
  o.arch.resolution = config.data.resolution;
  o.arch.channels = config.data.channels;
  o.arch.num_classes = 0;
  o.role = role;
  o.epochs = static_cast<int>(args.get_int("--epochs"));
  o.batch_size = args.get_int("--batch-size");
  o.lr = args.get_double("--lr");
  o.pad = config.data.pad;
  o.hflip = config.data.hflip;
  o.seed = args.has("--seed") ? static_cast<uint64_t>(args.get_int("--seed")) : config.seed + (role == "loss" ? 0 : 1);
  o.threads = config.threads;
  o.num_workers = std::max(1, config.data.num_workers);
  o.device = config.device;
  const std::string out = args.has("--out") ? args.get("--out")
                                            : (role == "loss" ? config.perceptual.weights : config.eval.feature_weights);
  if (out.empty()) throw UsageError("no output path: pass --out FILE.safetensors");
  std::filesystem::create_directories(std::filesystem::path(out).parent_path().empty() ? "." : std::filesystem::path(out).parent_path());
  o.metrics_path = (std::filesystem::path(out).parent_path() / "metrics.jsonl").string();
  auto train = open_dataset(config.data, "train");
  auto test = open_dataset(config.data, "test");
  const auto r = train_classifier(o, *train, *test, out);
  std::cout << "classifier (" << r.arch.kind << ", role " << role << ") test accuracy " << 100 * r.test_accuracy
            << "% after " << r.steps << " steps in " << r.seconds << " s -> " << r.path << "\n";
  return 0;
}

int run_train_tokenizer(const Args& args) {
  TokenizerTrainOptions o;
  o.config = load_config(args);
  o.phase = static_cast<int>(args.get_int("--phase"));
  if (o.phase != 1 && o.phase != 2) throw UsageError("--phase must be 1 or 2");
  o.init = args.get("--init");
  if (o.phase == 2 && o.init.empty() && !args.flag("--resume"))
    throw UsageError("phase 2 needs --init PHASE1_RUN/tokenizer.safetensors");
  o.run_dir = args.has("--out") ? args.get("--out") : "runs/" + o.config.preset + "/tokenizer-phase" + std::to_string(o.phase);
  o.resume = args.flag("--resume");
  o.overwrite = args.flag("--overwrite");
  if (o.resume && o.overwrite) throw UsageError("give either --resume (continue the run) or --overwrite (replace it)");
  o.resume_overrides = args.all("--set");
  o.max_steps = args.get_int("--max-steps");
  o.trace_dir = args.get("--trace");
  o.stop = install_stop_handlers();
  o.group = join_process_group(o.config);
  const auto r = [&] {
    try {
      return train_tokenizer(o);
    } catch (const ProcessGroupFailed& e) {
      throw Error(e.message(), restart_hint(o.run_dir + "/checkpoint.safetensors"));
    }
  }();
  std::cout << (r.interrupted ? "stopped" : "finished") << " at step " << r.step << "; tokenizer: " << r.model_path
            << (r.interrupted ? " (continue with --resume)" : "") << "\n";
  return interrupted_exit_code();
}

}  // namespace

Command train_classifier_command() {
  Command c;
  c.info.name = "train-classifier";
  c.info.brief = "Train the perceptual-loss or the evaluation classifier on the data set's labels";
  c.info.summary =
      "Train a small classifier on the data set's labels: the perceptual-loss network (--role loss)\n"
      "or the evaluation feature network (--role eval; another architecture and seed)";
  c.config_options("fmnist");
  c.option("--role", "ROLE", "loss", "loss (perceptual network) or eval (FID/IS features)");
  c.option("--kind", "KIND", "", "architecture: vgg or resnet (default: vgg for loss, resnet for eval)");
  c.option("--width", "N", "16", "channels of the first stage");
  c.option("--epochs", "N", "2", "training epochs");
  c.option("--batch-size", "N", "128", "images per step");
  c.option("--lr", "LR", "0.003", "peak learning rate (AdamW, warm-up then cosine)");
  c.option("--seed", "N", "", "seed (default: config seed, +1 for the eval role)");
  c.option("--out", "FILE", "", "weights file (default: perceptual.weights or eval.feature_weights of the config)");
  c.run = run_train_classifier;
  return c;
}

Command train_tokenizer_command() {
  Command c;
  c.info.name = "train-tokenizer";
  c.info.brief = "Train the VQ tokenizer, phase 1 or phase 2";
  c.info.summary =
      "Train the VQ tokenizer: phase 1 (encoder, codebook, decoder; semantic perceptual loss) or\n"
      "phase 2 (frozen encoder and codebook, decoder with B&D attention fine-tuned)";
  c.config_options("fmnist");
  c.option("--phase", "N", "1", "1 or 2");
  c.option("--init", "FILE", "", "phase 2: the phase-1 tokenizer.safetensors");
  c.option("--out", "DIR", "", "run directory (default: runs/PRESET/tokenizer-phaseN)");
  c.flag("--resume", "continue the run in --out from its checkpoint (--set may change its training schedule)");
  c.flag("--overwrite", "delete the run --out holds and start afresh (without it, such a run is refused)");
  c.option("--max-steps", "N", "-1", "stop with a checkpoint after N steps of this invocation (-1: no limit)");
  c.option("--trace", "DIR", "", "record every step (inputs, loss terms, gradients) for seqgan_torch.train_parity");
  c.run = run_train_tokenizer;
  return c;
}

}  // namespace seqgan::cli
