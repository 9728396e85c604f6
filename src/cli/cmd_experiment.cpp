// `seqgan experiment NAME`: the paper's observations and ablations at small scale. Every arm of
// an experiment (a tokenizer variant) is trained for every seed at the same budget, with the same
// AR and NAR transformers on its tokens, then measured: codebook usage, rFID, PSNR, generation
// FID/IS of both transformers, their validation losses and the AR model's teacher-forced top-1
// accuracy. Results and DIR/NAME/report.html are rewritten after every finished run.
//
// Layout: DIR/classifiers/ (loss and evaluation networks, shared by every experiment),
// DIR/NAME/test-stats.safetensors, DIR/NAME/ARM/seed-S/ (one run: stages.json, tokenizer/,
// tokens, ar/, nar/, samples-*/, visualization.png, result.json). Stages record themselves, so an
// interrupted experiment resumes where it stopped; runs of different seeds may go on in parallel
// processes (`--seeds 1` and `--seeds 2`): the shared stages take a lock.
#include <sys/file.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli.h"
#include "cli/stages.h"
#include "data/open.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "report/experiment_report.h"
#include "report/guidance_report.h"
#include "report/html.h"
#include "report/scores_json.h"
#include "seqgan/error.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "train/run.h"

namespace seqgan::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The budget of every run on top of the preset: the same for every arm, so that arms compare.
// About 7 minutes per run on one core of a 2-core CPU (fmnist).
const std::vector<std::string> kBudget{
    "train_tokenizer.iterations=400", "discriminator.start_iter=200", "train_tokenizer.image_every=400",
    "train_tokenizer.checkpoint_every=100", "train_ar.iterations=200", "train_ar.warmup=20",
    "train_ar.decay_start=100", "train_ar.val_every=25", "train_ar.checkpoint_every=100",
    "train_nar.iterations=200", "train_nar.warmup=20", "train_nar.decay_start=100", "train_nar.val_every=25",
    "train_nar.checkpoint_every=100"};

// The method experiment's budget, chosen by `experiment budget` on fmnist: a tokenizer of one
// epoch (1,875 steps of 32 images) and transformers of 1,000 steps. Against the other
// experiments' 400 and 200 steps this takes generation FID of the baseline from 41 to 6.5 (AR);
// 200 transformer steps leave every arm's samples blobs. Phase 2 trains 0.4 times phase 1's steps,
// as the paper's 200,000 after 500,000.
const std::vector<std::string> kMethodBudget{
    "train_tokenizer.iterations=1875", "discriminator.start_iter=937", "train_tokenizer.image_every=1875",
    "train_tokenizer.checkpoint_every=469", "train_ar.iterations=1000", "train_ar.warmup=100",
    "train_ar.decay_start=500", "train_ar.val_every=125", "train_ar.checkpoint_every=500",
    "train_nar.iterations=1000", "train_nar.warmup=100", "train_nar.decay_start=500", "train_nar.val_every=125",
    "train_nar.checkpoint_every=500", "phase2.iterations=750", "phase2.image_every=750",
    "phase2.checkpoint_every=250"};

// The one-phase baseline of the paper's ablations (Tables 1, 5, 6): L_low alone (alpha = 0),
// entropy-regularised codebook, no attention.
const std::vector<std::string> kBaseline{"perceptual.alpha=0"};

using Arms = std::vector<report::ExperimentArm>;
using Arm = report::ExperimentArm;

Arms alpha_sweep_arms(const Config&) {
  Arms arms;
  for (const char* a : {"0", "0.25", "0.5", "0.75", "1"})
    arms.push_back(Arm{std::string("alpha-") + a, std::string("alpha = ") + a, {std::string("perceptual.alpha=") + a},
                       std::stod(a)});
  return arms;
}

Arms decoder_arms(const Config&) {
  return {Arm{"baseline", "baseline (convolutions)", kBaseline, 0},
          Arm{"conv-x2", "+Conv x2", {"perceptual.alpha=0", "tokenizer.decoder_extra_res_blocks=2"}, 1},
          Arm{"attention-x2", "+Attention x2", {"perceptual.alpha=0", "tokenizer.decoder_attn_pairs=2"}, 2}};
}

// `base` (the preset with the user's settings) sizes the F&N codebook and the k-means period.
Arms codebook_arms(const Config& base) {
  const int64_t kmeans_every = std::max<int64_t>(1, base.train_tokenizer.iterations / 8);
  return {Arm{"plain", "no regulariser (VQGAN)", {"perceptual.alpha=0", "quantizer.entropy_gamma=0"}, 0},
          // ViT-VQGAN's F&N: lookup dimension / 8 and K x 8, as the paper's 256 -> 32, 1024 -> 8192.
          Arm{"factorized", "+ F&N (dim / 8, K x 8)",
            {"perceptual.alpha=0", "quantizer.entropy_gamma=0", "quantizer.kind=factorized",
             "quantizer.factor_dim=" + std::to_string(std::max(1, base.tokenizer.code_dim / 8)),
             "tokenizer.codebook_size=" + std::to_string(base.tokenizer.codebook_size * 8)},
            1},
          // Eight re-estimations over the training (every 50 steps of the experiments' 400).
          Arm{"kmeans", "+ k-means every " + std::to_string(kmeans_every) + " steps",
            {"perceptual.alpha=0", "quantizer.entropy_gamma=0", "quantizer.kmeans_every=" + std::to_string(kmeans_every)},
            2},
          Arm{"entropy", "+ H(D) entropy regulariser", kBaseline, 3}};
}

Arms perceptual_layer_arms(const Config&) {
  const auto taps = [](const std::string& list) {
    std::string j;  // a JSON list of the comma-separated names
    std::stringstream ss(list);
    for (std::string t; std::getline(ss, t, ',');) j += (j.empty() ? "[\"" : ",\"") + t + "\"";
    return std::vector<std::string>{"perceptual.alpha=0", "perceptual.low_taps=" + j + "]"};
  };
  return {Arm{"low", "L_low: relu1_2-relu5_3", kBaseline, 0},
          Arm{"A", "A: relu1_2-relu5_3 + logit", taps("relu1_2,relu2_2,relu3_3,relu4_3,relu5_3,logit"), 1},
          Arm{"B", "B: relu2_2-relu5_3 + logit", taps("relu2_2,relu3_3,relu4_3,relu5_3,logit"), 2},
          Arm{"C", "C: relu3_3-relu5_3 + logit", taps("relu3_3,relu4_3,relu5_3,logit"), 3},
          Arm{"D", "D: relu4_3, relu5_3 + logit", taps("relu4_3,relu5_3,logit"), 4},
          Arm{"sem", "L_sem: relu5_3 + logit", {"perceptual.alpha=1"}, 5},
          Arm{"E", "E: logit alone", taps("logit"), 6}};
}

// The paper's method against its baseline (Tables 2-4, Fig. 8b), and the control that phase 2
// alone does not explain the difference: the same phase 2 on the alpha-0 tokenizer.
Arms method_arms(const Config&) {
  return {Arm{"vqgan", "VQGAN: alpha 0, no regulariser", {"perceptual.alpha=0", "quantizer.entropy_gamma=0"}, 0},
          Arm{"alpha0-reg", "alpha 0 + H(D) regulariser", {"perceptual.alpha=0"}, 1},
          Arm{"phase1", "SeQ-GAN phase 1: alpha 1 + H(D)", {"perceptual.alpha=1"}, 2},
          Arm{"seqgan", "SeQ-GAN: phase 1, then phase 2", {"perceptual.alpha=1"}, 3, "phase1"},
          Arm{"control", "control: alpha 0 + H(D), then phase 2", {"perceptual.alpha=0"}, 4, "alpha0-reg"}};
}

// The settings of a tokenizer budget of `steps` steps (the GAN on for the second half) and of
// a transformer budget of `t` steps (warm-up a tenth, decay over the second half, 8 validations).
std::vector<std::string> budget_settings(int64_t steps, int64_t t) {
  const auto n = [](int64_t v) { return std::to_string(std::max<int64_t>(1, v)); };
  std::vector<std::string> b{"perceptual.alpha=0", "train_tokenizer.iterations=" + n(steps),
                             "discriminator.start_iter=" + n(steps / 2), "train_tokenizer.image_every=" + n(steps),
                             "train_tokenizer.checkpoint_every=" + n(steps / 4)};
  for (const std::string kind : {"train_ar", "train_nar"})
    for (const auto& [key, value] : std::vector<std::pair<std::string, int64_t>>{
             {"iterations", t}, {"warmup", t / 10}, {"decay_start", t / 2}, {"val_every", t / 8}, {"checkpoint_every", t / 2}})
      b.push_back(kind + "." + key + "=" + n(value));
  return b;
}

// How long the experiments should train: the baseline arm (alpha 0, H(D)) with tokenizers of
// 0.2, 1 and 3 epochs of the training set (transformers 1,000 steps) and transformers of 200,
// 1,000 and 3,000 steps (on the 0.2-epoch tokenizer of the other experiments).
Arms budget_arms(const Config& base) {
  const int64_t images = open_dataset(base.data, "train")->size();
  const int64_t epoch = std::max<int64_t>(1, images / base.train_tokenizer.batch_size);
  Arms arms;
  const auto add = [&](const std::string& epochs, int64_t steps, int64_t t) {
    arms.push_back(Arm{"tok" + epochs + "-tr" + std::to_string(t),
                       "tokenizer " + epochs + (epochs == "1" ? " epoch (" : " epochs (") + std::to_string(steps) +
                           " steps), transformers " +
                           std::to_string(t) + " steps",
                       budget_settings(steps, t), static_cast<double>(arms.size())});
  };
  add("0.2", epoch / 5, 200);
  add("0.2", epoch / 5, 1000);
  add("0.2", epoch / 5, 3000);
  add("1", epoch, 1000);
  add("3", 3 * epoch, 1000);
  return arms;
}

// One model pair per seed (class dropout and the EMA are in the experiment's budget).
Arms guidance_arms(const Config&) { return {Arm{"cfg", "class dropout and EMA", {}, 0}}; }

// An experiment: what the paper reports, the settings its runs add to kBudget, and its arms.
struct Experiment {
  const char* name;
  report::ExperimentClaim claim;
  std::vector<std::string> budget;
  Arms (*arms)(const Config& base);
  std::vector<report::ClaimCheck> checks;  // the paper's claims as comparisons of two arms
};

// The method experiment's claims (the arms of method_arms).
std::vector<report::ClaimCheck> method_checks() {
  const bool lower = true, higher = false;
  return {
      {"SeQ-GAN generates better than VQGAN (ImageNet AR FID 7.55 vs 15.78, Table 4)", "ar_fid", "seqgan", "vqgan", lower},
      {"SeQ-GAN generates better than VQGAN with a NAR transformer (Tables 3, 4)", "nar_fid", "seqgan", "vqgan", lower},
      {"SeQ-GAN's samples score a higher IS (ImageNet AR 121.3 vs 78.3, Table 4)", "ar_is", "seqgan", "vqgan", higher},
      {"SeQ-GAN reconstructs better than VQGAN (rFID 1.99 vs 7.94, Table 2)", "rfid", "seqgan", "vqgan", lower},
      {"SeQ-GAN uses more of its codebook (100% vs 44%, Table 2)", "codebook_usage", "seqgan", "vqgan", higher},
      {"The entropy regulariser alone raises usage (43.5% -> 100%, Table 5)", "codebook_usage", "alpha0-reg", "vqgan", higher},
      {"The entropy regulariser alone lowers NAR FID (14.58 -> 13.26, Table 5)", "nar_fid", "alpha0-reg", "vqgan", lower},
      {"The regulariser alone lowers AR FID (17.19 -> 16.97, Table 5)", "ar_fid", "alpha0-reg", "vqgan", lower},
      {"A semantic tokenizer (alpha 1) is easier for the AR transformer: lower validation loss (supplement Fig. 2)",
       "ar_val_loss", "phase1", "alpha0-reg", lower},
      {"... and for the NAR transformer (supplement Fig. 2)", "nar_val_loss", "phase1", "alpha0-reg", lower},
      {"... and the AR model predicts more tokens right, teacher-forced (Fig. 6a)", "ar_top1", "phase1", "alpha0-reg", higher},
      {"Phase 2 lowers AR FID (ImageNet 7.83 -> 7.55, Fig. 8b)", "ar_fid", "seqgan", "phase1", lower},
      {"Phase 2 lowers NAR FID (ImageNet 5.31 -> 4.99, Fig. 8b)", "nar_fid", "seqgan", "phase1", lower},
      {"Phase 2 restores the details phase 1 lost (Fig. 8a): lower rFID", "rfid", "seqgan", "phase1", lower},
      {"Phase 2 alone does not explain SeQ-GAN: it beats the same phase 2 on the alpha-0 tokenizer (AR)", "ar_fid",
       "seqgan", "control", lower},
      {"... nor with the NAR transformer", "nar_fid", "seqgan", "control", lower}};
}

// The experiments, in the order of the command's help.
const std::vector<Experiment> kExperiments{
    {"alpha-sweep",
     {"Semantic ratio alpha of the perceptual loss (paper Fig. 6, supplement Fig. 2)",
      "On ImageNet the paper finds rFID best near alpha = 0.4 and worse towards both ends, while generation FID "
      "falls steadily as alpha rises, and the transformers' validation loss is lower for a larger alpha "
      "(Observation 2: semantic compression in the tokenizer helps generation)."},
     {},
     alpha_sweep_arms,
     {}},
    {"decoder",
     {"Decoder capacity: reconstruction vs generation (paper Table 1)",
      "On ImageNet: rFID 3.45 / 3.22 / 2.90 for the baseline, +Conv x2 and +Attention x2 decoders, but AR FID "
      "16.97 / 17.19 / 17.42 and NAR FID 13.26 / 13.51 / 14.02 (Observation 1: better reconstruction does not "
      "imply better generation)."},
     {},
     decoder_arms,
     {}},
    {"codebook",
     {"Codebook regularisation (paper Table 5)",
      "On ImageNet: VQGAN 43.5% usage, rFID 4.07, AR 17.19, NAR 14.58; factorised L2-normalised codes (dim 32, "
      "K 8192) 99.7%, rFID 2.93, AR 24.91, NAR unstable; k-means 100%, 3.54, 16.84, 15.02; entropy regulariser "
      "100%, 3.45, 16.97, 13.26."},
     {},
     codebook_arms,
     {}},
    {"perceptual-layers",
     {"Taps of the perceptual loss (paper Table 6)",
      "On ImageNet, rFID / AR / NAR: L_low 3.45 / 16.97 / 13.26; A (+logit) 3.01 / 15.19 / 11.78; B 2.93 / 14.47 / "
      "11.58; C 2.81 / 14.08 / 10.52; D 2.62 / 13.34 / 9.56; L_sem 2.77 / 12.07 / 8.84; E (logit alone) 4.65 / "
      "17.88 / 14.00: dropping shallow taps improves generation, the logit alone is worst."},
     {},
     perceptual_layer_arms,
     {}},
    {"method",
     {"SeQ-GAN against the VQGAN baseline, and what phase 2 adds (paper Tables 2-4, Fig. 8b)",
      "On ImageNet SeQ-GAN (alpha 1 and the entropy regulariser in phase 1, then the attention decoder fine-tuned at "
      "alpha 0 with the encoder and codebook fixed) reaches 100% codebook usage against VQGAN's 44% and rFID 1.99 "
      "against 7.94 (Table 2), and conditional generation FID 7.55 (AR) and 4.99 (NAR) against VQGAN's 15.78 (AR, "
      "Table 4); the second phase lowers generation FID on every data set (Fig. 8b: ImageNet AR 7.83 -> 7.55, NAR "
      "5.31 -> 4.99); the entropy regulariser alone raises usage from 43.5% to 100% (Table 5); a more semantic "
      "tokenizer gives the transformers a lower validation loss (supplement Fig. 2)."},
     kMethodBudget,
     method_arms,
     method_checks()},
    {"budget",
     {"How long to train: tokenizer and transformer budgets",
      "The paper trains its tokenizers for 500,000 steps (phase 1) and 200,000 (phase 2) and its transformers for "
      "300 ImageNet epochs. This study measures, on the data set at hand, how the transformers' validation loss and "
      "generation FID move with the tokenizer's and the transformers' budgets, to choose the experiments' budget."},
     {},
     budget_arms,
     {}},
    // Guidance reports on its own terms (report/guidance_report.h): its claim is a title alone.
    // Its runs add an EMA of the transformers (class dropout, 0.1, is the preset's); the warm-up
    // of the decay (see train/ema.h) lets 0.99 average about the last 100 of the 200 steps.
    {"guidance",
     {"classifier-free guidance, EMA weights and rejection sampling", ""},
     {"train_ar.ema_decay=0.99", "train_nar.ema_decay=0.99"},
     guidance_arms,
     {}}};

// The experiment called `name`; a usage error naming them all when there is none.
const Experiment& experiment_named(const std::string& name) {
  std::string names;
  for (size_t i = 0; i < kExperiments.size(); ++i) {
    if (kExperiments[i].name == name) return kExperiments[i];
    names += (i == 0 ? "" : i + 1 == kExperiments.size() ? " or " : ", ") + std::string(kExperiments[i].name);
  }
  throw UsageError("unknown experiment '" + name + "': " + names);
}

// The budget of an experiment: kBudget, then the experiment's own settings (none for an unknown
// name, which experiment_named reports). The user's --set come after and may change any of it.
std::vector<std::string> budget_of(const std::string& name) {
  std::vector<std::string> b = kBudget;
  for (const auto& e : kExperiments)
    if (e.name == name) b.insert(b.end(), e.budget.begin(), e.budget.end());
  return b;
}

Config config_of(const std::vector<std::string>& args, const std::string& preset) {
  Command c;
  c.config_options(preset);
  return load_config(c.parse(args));
}

std::vector<int64_t> parse_seeds(const std::string& text) {
  std::string bad;
  const auto seeds = parse_integer_list(text, &bad);
  if (!seeds) throw UsageError("--seeds: '" + bad + "' is not an integer (example: --seeds 1,2)");
  if (seeds->empty()) throw UsageError("--seeds needs at least one seed (example: --seeds 1,2)");
  return *seeds;
}

// An exclusive lock on a file for the lifetime of the object: stages shared by parallel
// experiment processes (the classifiers, the test statistics) run once.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fs::create_directories(fs::path(path).parent_path());
    fd_ = ::open(path.c_str(), O_CREAT | O_RDWR, 0644);
    SEQGAN_CHECK(fd_ >= 0, "cannot open the lock file ", path);
    ::flock(fd_, LOCK_EX);
  }
  ~FileLock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};


double last_value(const std::string& metrics, const std::string& kind, const std::string& key) {
  const auto s = report::read_series(metrics, kind, key, "");
  return s.points.empty() ? -1 : s.points.back().second;
}

// Measures one finished run into RUN/result.json.
void evaluate_run(const std::string& run, const std::string& models, const std::string& stats_path,
                  const std::vector<std::string>& args, const std::string& preset, int64_t eval_images,
                  const report::ExperimentArm& arm, int64_t seed) {
  const Config config = config_of(args, preset);
  const auto device = to_device(resolve_device(config.device));
  EvalNetwork net(config.eval, device);
  const int64_t batch = config.eval.batch_size;
  const FeatureStats test_stats = load_feature_stats(stats_path);
  const ImageSource test = open_image_source("data:test", config.data);
  auto tok = load_tokenizer(run + "/tokenizer/tokenizer.safetensors", device);
  const TokenizerScores s = score_tokenizer(tok.model, test, eval_images, batch, &net, &test_stats);
  json r{{"arm", arm.name},
         {"label", arm.label},
         {"x", arm.x},
         {"seed", seed},
         {"feature_network", net.name()},
         {"eval_images", s.count},
         {"tokenizer_parameters", count_parameters(*tok.model)}};
  r.update(report::tokenizer_scores_json(s));
  for (const std::string kind : {"ar", "nar"}) {
    const ImageSource gen = open_image_source(run + "/samples-" + kind + "/images", config.data);
    const FeatureSet f = extract_features(net, gen, -1, batch, "features (" + kind + " samples)");
    const InceptionScore is = inception_score(f.logits, config.eval.is_splits);
    r[kind + "_fid"] = frechet_distance(test_stats, feature_stats(net, f, gen.name));
    r[kind + "_is"] = is.mean;
    r[kind + "_samples"] = f.features.size(0);
    r[kind + "_val_loss"] = last_value(models + "/" + kind + "/metrics.jsonl", "val", "loss");
  }
  const json vis = json::parse(read_text(run + "/visualization.json"));
  r["ar_top1"] = vis.value("top1_accuracy", -1.0);
  write_text_atomic(run + "/result.json", r.dump(2) + "\n");
}

// FID, IS and acceptance of every sample set of a guidance run into RUN/result.json.
void evaluate_guidance_run(const std::string& run, const std::string& stats_path, const std::vector<std::string>& args,
                           const std::string& preset, const report::ExperimentArm& arm, int64_t seed) {
  const Config config = config_of(args, preset);
  const auto device = to_device(resolve_device(config.device));
  EvalNetwork net(config.eval, device);
  const FeatureStats test_stats = load_feature_stats(stats_path);
  json sets = json::array();
  for (const auto& set : report::guidance_sets()) {
    const std::string dir = run + "/" + set.folder();
    const ImageSource gen = open_image_source(dir + "/images", config.data);
    const FeatureSet f = extract_features(net, gen, -1, config.eval.batch_size, "features (" + set.folder() + ")");
    const json rejection = report::read_json_file(dir + "/rejection.json");
    sets.push_back({{"kind", set.kind},
                    {"weights", set.weights},
                    {"guidance", set.guidance},
                    {"accept_fraction", set.accept_fraction},
                    {"acceptance_rate", rejection.value("acceptance_rate", 1.0)},
                    {"fid", frechet_distance(test_stats, feature_stats(net, f, gen.name))},
                    {"is", inception_score(f.logits, config.eval.is_splits).mean},
                    {"samples", f.features.size(0)}});
  }
  json r{{"arm", arm.name}, {"label", arm.label}, {"seed", seed}, {"feature_network", net.name()}, {"sets", sets}};
  for (const std::string kind : {"ar", "nar"}) r[kind + "_val_loss"] = last_value(run + "/" + kind + "/metrics.jsonl", "val", "loss");
  write_text_atomic(run + "/result.json", r.dump(2) + "\n");
}

// What every run of an experiment shares: its name and arms, where it writes, the arguments of
// every stage's command.
struct ExperimentSetup {
  std::string name, preset, job;
  std::string exp;          // DIR/NAME
  std::string classifiers;  // the loss and evaluation classifiers' directory
  std::string stats;        // the test images' feature statistics, the FID reference of every run
  std::vector<int64_t> seeds;
  std::vector<std::string> base_sets;  // the settings every run shares: the budget, then the user's
  Arms arms;
  std::set<std::string> chosen;  // the arms to run (--arms)
  int64_t eval_images = 0;
  report::ExperimentInfo info;
  bool guidance = false;
  std::vector<std::string> common;  // added to every stage's command

  // Rewrites the report from the runs finished so far; returns its path.
  std::string write_report() const {
    return guidance ? report::write_guidance_report(info) : report::write_experiment_report(info);
  }
};

// The arms --arms names (all when empty); a usage error naming the arms for an unknown one.
std::set<std::string> chosen_arms(const std::string& list, const Arms& arms) {
  std::set<std::string> all, chosen;
  std::string names;
  for (const auto& a : arms) {
    all.insert(a.name);
    names += (names.empty() ? "" : ", ") + a.name;
  }
  if (list.empty()) return all;
  std::stringstream ss(list);
  for (std::string name; std::getline(ss, name, ',');) {
    if (!all.count(name)) throw UsageError("--arms: this experiment has no arm '" + name + "' (its arms: " + names + ")");
    chosen.insert(name);
  }
  return chosen;
}

// The experiment NAME with the budget and the user's settings, checked; trains nothing.
ExperimentSetup setup_experiment(const Args& args) {
  ExperimentSetup s;
  s.name = args.positionals().at(0);
  s.seeds = parse_seeds(args.get("--seeds"));
  const std::string out = args.get("--out");
  s.preset = args.get("--preset");
  const auto budget = budget_of(s.name);
  for (const auto& b : budget) s.base_sets.insert(s.base_sets.end(), {"--set", b});
  for (const auto& b : args.all("--set")) s.base_sets.insert(s.base_sets.end(), {"--set", b});
  const Config base = config_of(s.base_sets, s.preset);
  const Experiment& experiment = experiment_named(s.name);
  s.arms = experiment.arms(base);
  s.chosen = chosen_arms(args.get("--arms"), s.arms);
  s.exp = out + "/" + s.name;
  s.classifiers = args.get("--classifiers").empty() ? out + "/classifiers" : args.get("--classifiers");
  s.stats = s.exp + "/test-stats.safetensors";
  s.eval_images = args.get_int("--eval-images");
  if (s.eval_images < 100) throw UsageError("--eval-images must be at least 100");
  s.info = report::ExperimentInfo{s.name, experiment.claim, s.exp, s.preset, s.arms, budget, {},
                                  args.get("--train-images"), args.get("--samples-per-class"), s.eval_images,
                                  experiment.checks};
  for (const auto& b : args.all("--set")) s.info.settings.push_back(b);
  s.guidance = s.name == "guidance";
  s.job = "experiment " + s.name;
  return s;
}

// The arguments every stage's command gets: the preset, threads, device, the shared classifiers,
// then the budget and the user's settings.
std::vector<std::string> common_arguments(const Args& args, const ExperimentSetup& s) {
  std::vector<std::string> common{"--preset", s.preset, "--threads", args.get("--threads"), "--device", args.get("--device"),
                                  "--set", "perceptual.weights=" + s.classifiers + "/classifier-loss/classifier.safetensors",
                                  "--set", "eval.feature_weights=" + s.classifiers + "/classifier-eval/classifier.safetensors"};
  common.insert(common.end(), s.base_sets.begin(), s.base_sets.end());
  return common;
}

// The loss and evaluation classifiers, shared by every experiment.
void train_classifiers(const ExperimentSetup& s) {
  FileLock lock(s.classifiers + "/.lock");
  StageRunner shared(s.classifiers + "/stages.json", s.common, s.job);
  // Classifiers already there (e.g. a demo's, through --classifiers) are used as they are.
  for (const std::string role : {"loss", "eval"}) {
    const std::string file = s.classifiers + "/classifier-" + role + "/classifier.safetensors";
    if (!fs::exists(file))
      shared.stage(role == "loss" ? "classifier (loss network)" : "classifier (evaluation network)",
                   {{"train-classifier", "--role", role, "--out", file}});
  }
}

// The test images' feature statistics, and the machine, in the experiment's stages.json.
void test_statistics(const ExperimentSetup& s) {
  FileLock lock(s.exp + "/.lock");
  StageRunner shared(s.exp + "/stages.json", s.common, s.job);
  const std::string count = std::to_string(s.eval_images);
  shared.stage("test statistics", {}, {"seqgan fid-stats data:test --count " + count + " --out " + s.stats}, [&] {
    std::vector<std::string> a{"fid-stats", "data:test", "--count", count, "--out", s.stats};
    a.insert(a.end(), s.common.begin(), s.common.end());
    SEQGAN_CHECK_HINT(run_cli(a) == 0, "fix the problem above and run the experiment again", "seqgan ", join_args(a), " failed");
  });
  auto& st = shared.state();
  st["machine"] = machine_summary();
  shared.save();
}

// One arm at one seed.
struct ArmRun {
  const report::ExperimentArm& arm;
  int64_t seed;
  std::string dir;                // DIR/NAME/ARM/seed-S
  std::string tokenizer;          // its tokenizer.safetensors
  std::string models;             // where its tokens and transformers are: its own directory, or a phase-1 run's
  std::vector<std::string> args;  // the experiment's common arguments and the run's settings
};

// Whether two tokenizer files encode alike: the same encoder and codebook weights, bit for bit.
bool same_codes(const std::string& a, const std::string& b) {
  const auto ta = load_tokenizer(a, torch::kCPU), tb = load_tokenizer(b, torch::kCPU);
  const auto sa = state_dict(*ta.model), sb = state_dict(*tb.model);
  for (const auto& [name, value] : sa) {
    if (name.rfind("encoder.", 0) != 0 && name.rfind("quantizer.", 0) != 0) continue;
    if (!sb.count(name) || !at::equal(value, sb.at(name))) return false;
  }
  return true;
}

// A phase-2 arm: phase 2 on the phase-1 tokenizer of the same seed, checked to encode as that
// one does; its tokens and transformers are that run's.
void train_phase2(const ArmRun& run, StageRunner& r) {
  const std::string init = run.models + "/tokenizer/tokenizer.safetensors";
  SEQGAN_CHECK_HINT(file_exists(init), "run the arm '" + run.arm.phase2_of + "' first (the arms run in table order)",
                    "arm '", run.arm.name, "' continues the phase-1 tokenizer ", init, ", which does not exist");
  r.stage("tokenizer phase 2", {r.resumable({"train-tokenizer", "--phase", "2", "--init", init, "--out", run.dir + "/tokenizer"},
                                            run.dir + "/tokenizer")});
  r.stage("codes unchanged", {}, {"(in-process) encoder and codebook of " + run.tokenizer + " against " + init}, [&] {
    SEQGAN_CHECK_HINT(same_codes(init, run.tokenizer), "phase 2 must keep them fixed: report this with the run directory",
                      "phase 2 changed the encoder or codebook of ", init);
  });
}

// The run's tokenizer, its tokens of training and test images, and the AR and NAR transformers.
void train_models(const Args& args, const ArmRun& run, StageRunner& r) {
  const std::string& dir = run.dir;
  if (!run.arm.phase2_of.empty()) return train_phase2(run, r);
  r.stage("tokenizer", {r.resumable({"train-tokenizer", "--phase", "1", "--out", dir + "/tokenizer"}, dir + "/tokenizer")});
  r.stage("tokens", {{"tokenize", "--tokenizer", run.tokenizer, "--split", "train", "--limit", args.get("--train-images"),
                      "--out", dir + "/tokens-train.safetensors"},
                     {"tokenize", "--tokenizer", run.tokenizer, "--split", "test", "--limit", "1000", "--out",
                      dir + "/tokens-test.safetensors"}});
  for (const std::string kind : {"ar", "nar"})
    r.stage(kind + " transformer", {r.resumable({"train-transformer", "--kind", kind, "--tokens", dir + "/tokens-train.safetensors",
                                                 "--val-tokens", dir + "/tokens-test.safetensors", "--out", dir + "/" + kind},
                                                dir + "/" + kind)});
}

// A guidance run: a stage per sample set, then FID, IS and acceptance of them all. Rejection
// scores with the perceptual-loss classifier, so that the network that picks the samples is not
// the one that measures them.
void sample_guidance_sets(const Args& args, const ExperimentSetup& s, const ArmRun& run, StageRunner& r) {
  for (const auto& set : report::guidance_sets()) {
    std::ostringstream g, f;
    g << set.guidance;
    f << set.accept_fraction;
    r.stage(set.folder(), {{"sample", "--model", run.dir + "/" + set.kind + "/transformer.safetensors", "--tokenizer",
                            run.tokenizer, "--weights", set.weights, "--per-class", args.get("--samples-per-class"),
                            "--batch-size", "250", "--grid-columns", "12", "--seed", std::to_string(run.seed), "--set",
                            "sample.guidance=" + g.str(), "--set", "sample.accept_fraction=" + f.str(),
                            "--classifier", s.classifiers + "/classifier-loss/classifier.safetensors", "--out",
                            run.dir + "/" + set.folder()}});
  }
  r.stage("evaluation", {}, {"(in-process) FID and IS of every sample set"},
          [&] { evaluate_guidance_run(run.dir, s.stats, run.args, s.preset, run.arm, run.seed); });
}

// Any other run: samples of both transformers, the AR model's teacher-forced visualisation, then
// the tokenizer's and the samples' scores.
void sample_and_evaluate(const Args& args, const ExperimentSetup& s, const ArmRun& run, StageRunner& r) {
  std::vector<std::vector<std::string>> sampling;
  for (const std::string kind : {"ar", "nar"})
    sampling.push_back({"sample", "--model", run.models + "/" + kind + "/transformer.safetensors", "--tokenizer", run.tokenizer,
                        "--per-class", args.get("--samples-per-class"), "--batch-size", "250", "--grid-columns", "12",
                        "--seed", std::to_string(run.seed), "--out", run.dir + "/samples-" + kind});
  r.stage("samples", sampling);
  r.stage("visualisation", {{"visualize", "--model", run.models + "/ar/transformer.safetensors", "--tokenizer", run.tokenizer,
                             "--count", "1000", "--out", run.dir + "/visualization.png", "--json",
                             run.dir + "/visualization.json"}});
  r.stage("evaluation", {},
          {"(in-process) rFID, PSNR, usage on " + std::to_string(s.eval_images) + " test images; FID and IS of the samples"},
          [&] { evaluate_run(run.dir, run.models, s.stats, run.args, s.preset, s.eval_images, run.arm, run.seed); });
}

// One arm at one seed, from the tokenizer to RUN/result.json; then the report is rewritten.
void run_arm(const Args& args, const ExperimentSetup& s, const report::ExperimentArm& arm, int64_t seed) {
  const std::string seed_dir = "/seed-" + std::to_string(seed);
  ArmRun run{arm, seed, s.exp + "/" + arm.name + seed_dir, "", "", s.common};
  run.tokenizer = run.dir + "/tokenizer/tokenizer.safetensors";
  run.models = arm.phase2_of.empty() ? run.dir : s.exp + "/" + arm.phase2_of + seed_dir;
  run.args.insert(run.args.end(), {"--set", "seed=" + std::to_string(seed)});
  for (const auto& a : arm.settings) run.args.insert(run.args.end(), {"--set", a});
  StageRunner r(run.dir + "/stages.json", run.args, s.job + " " + arm.name + " seed " + std::to_string(seed));
  r.state()["arm"] = arm.name;
  r.state()["seed"] = seed;
  r.state()["arguments"] = join_args(run.args);
  r.save();
  train_models(args, run, r);
  if (s.guidance)
    sample_guidance_sets(args, s, run, r);
  else
    sample_and_evaluate(args, s, run, r);
  s.write_report();
}

int run_experiment(const Args& args) {
  ExperimentSetup s = setup_experiment(args);
  if (args.flag("--report-only")) {
    std::cout << "wrote " << s.write_report() << "\n";
    return 0;
  }
  set_threads(static_cast<int>(args.get_int("--threads")));
  s.common = common_arguments(args, s);
  try {
    train_classifiers(s);
    test_statistics(s);
    for (const int64_t seed : s.seeds)
      for (const auto& arm : s.arms)
        if (s.chosen.count(arm.name)) run_arm(args, s, arm, seed);
  } catch (const StageRunner::Interrupted& e) {
    std::cout << s.job << ": interrupted; run the same command again to resume\n";
    return e.exit_code();
  }
  const std::string report = s.write_report();
  std::cout << s.job << ": done; open " << report << " (tables also in " << s.exp << "/results.md)\n";
  return 0;
}

}  // namespace

Command experiment_command() {
  Command c;
  c.info.name = "experiment";
  c.info.brief = "Small-scale studies: method, alpha-sweep, decoder, codebook, perceptual-layers, guidance, budget";
  c.info.summary =
      "Reproduce the paper's observations at small scale: NAME is alpha-sweep (Fig. 6: alpha in {0, .25, .5, .75, 1}),\n"
      "decoder (Table 1: baseline, +Conv x2, +Attention x2), codebook (Table 5: no regulariser, factorised L2-normalised\n"
      "codes, k-means, entropy regulariser), perceptual-layers (Table 6: the tap sets) or guidance (classifier-free\n"
      "guidance scales, EMA and raw weights, rejection sampling: the FID/IS trade-off), method (Tables 2-4, Fig. 8b:\n"
      "VQGAN baseline, the regulariser, SeQ-GAN phase 1, SeQ-GAN with phase 2, and phase 2 on the alpha-0 tokenizer)\n"
      "or budget (tokenizer and transformer budgets, to choose the experiments'). Each arm and seed trains a\n"
      "tokenizer, AR and NAR transformers at one budget (6 to 9 minutes per run on a CPU core with fmnist; method\n"
      "trains at the budget the budget study chose: a one-epoch tokenizer, 1,000 transformer steps) and is\n"
      "evaluated; DIR/NAME/report.html and results.md hold the tables, curves and figures. Interrupted, it resumes\n"
      "when run again; seeds can run in parallel processes (--seeds 1 and --seeds 2, --threads 1 each).";
  c.positional("NAME");
  c.option("--out", "DIR", "runs/experiments", "experiments directory (DIR/NAME/ holds this experiment)");
  c.option("--preset", "NAME", "fmnist", "configuration preset of every run");
  c.option("--seeds", "LIST", "1,2", "comma-separated seeds; every arm runs once per seed");
  c.option("--arms", "LIST", "", "comma-separated arms to run (default: all; the report shows every finished arm)");
  c.option("--classifiers", "DIR", "", "loss and evaluation classifiers (default: DIR/classifiers, trained if missing)");
  c.option("--train-images", "N", "12800", "training images tokenised for the transformers");
  c.option("--samples-per-class", "N", "50", "samples per class of each transformer for FID and IS");
  c.option("--eval-images", "N", "5000", "test images for rFID, PSNR, usage and the FID reference");
  c.option("--set", "KEY=VALUE", "", "override one configuration value of every run", true);
  c.option("--threads", "N", "0", "CPU threads (0: all cores)");
  c.option("--device", "DEV", "auto", "auto, cpu or cuda");
  c.flag("--report-only", "rebuild DIR/NAME/report.html and results.md from the finished runs, train nothing");
  c.run = run_experiment;
  return c;
}

}  // namespace seqgan::cli
