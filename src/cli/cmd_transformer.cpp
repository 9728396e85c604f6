// `seqgan train-transformer`, `seqgan sample`, `seqgan visualize`.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli.h"
#include "cli/signals.h"
#include "eval/evaluate.h"
#include "features/classifier.h"
#include "io/npz.h"
#include "seqgan/error.h"
#include "seqgan/image.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokens.h"
#include "train/distributed.h"
#include "train/run.h"
#include "train/transformer_trainer.h"
#include "transformer/rejection.h"
#include "transformer/sampling.h"
#include "transformer/transformer.h"

namespace seqgan::cli {
namespace {

bool parse_kind(const std::string& kind) {
  if (kind == "ar") return true;
  if (kind == "nar") return false;
  throw UsageError("--kind must be ar or nar, got '" + kind + "'");
}

int run_train_transformer(const Args& args) {
  TransformerTrainOptions o;
  o.config = load_config(args);
  o.causal = parse_kind(args.get("--kind"));
  const std::string runs = "runs/" + o.config.preset;
  o.tokens = args.has("--tokens") ? args.get("--tokens") : runs + "/tokens-train.safetensors";
  o.val_tokens = args.get("--val-tokens");
  o.run_dir = args.has("--out") ? args.get("--out") : runs + "/" + args.get("--kind");
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
      return train_transformer(o);
    } catch (const ProcessGroupFailed& e) {
      throw Error(e.message(), restart_hint(o.run_dir + "/checkpoint.safetensors"));
    }
  }();
  if (r.interrupted)
    std::cout << "stopped at step " << r.step << "; model: " << r.model_path << " (continue with --resume)\n";
  else
    std::cout << "finished at step " << r.step << "; validation loss " << std::setprecision(4) << r.val_loss << ", top-1 "
              << 100 * r.val_accuracy << "%; model: " << r.model_path << "\n";
  return interrupted_exit_code();
}

// "3,5,7" -> {3, 5, 7}; "all" -> 0..n-1.
std::vector<int64_t> parse_classes(const std::string& text, int64_t num_classes) {
  std::vector<int64_t> out;
  if (text == "all") {
    for (int64_t c = 0; c < num_classes; ++c) out.push_back(c);
    return out;
  }
  const auto list = parse_integer_list(text);
  if (!list) throw UsageError("--classes takes 'all' or comma-separated class ids, got '" + text + "'");
  for (const int64_t c : *list) {
    if (c < 0 || c >= num_classes)
      throw UsageError("--classes: class " + std::to_string(c) + " is out of range; the model knows classes 0 to " +
                       std::to_string(num_classes - 1));
    out.push_back(c);
  }
  if (out.empty()) throw UsageError("--classes is empty");
  return out;
}

// The probability a classifier gives each image's class: the scorer of rejection sampling.
struct ClassScorer {
  std::shared_ptr<Classifier> net;
  std::string name, weights;
  int64_t batch = 64;
  at::Tensor score(const at::Tensor& images, const std::vector<int64_t>& classes) {
    torch::NoGradGuard ng;
    const auto device = net->parameters().front().device();
    const int64_t size = net->arch().resolution;
    std::vector<at::Tensor> p;
    for (int64_t s = 0; s < images.size(0); s += batch) {
      auto x = images.narrow(0, s, std::min(batch, images.size(0) - s)).to(device);
      if (x.size(2) != size || x.size(3) != size)
        x = at::upsample_bilinear2d(x, {size, size}, false);
      p.push_back(at::softmax(net->forward(x).to(at::kDouble), 1).cpu());
    }
    return at::cat(p).gather(1, at::tensor(classes, at::kLong).unsqueeze(1)).squeeze(1);
  }
};

// --classifier, else the evaluation classifier (eval.feature_weights), checked to know the
// model's classes.
ClassScorer open_class_scorer(const Args& args, const Config& config, const TokenSpace& space, const torch::Device& device) {
  ClassScorer s;
  s.weights = args.get("--classifier").empty() ? config.eval.feature_weights : args.get("--classifier");
  SEQGAN_CHECK_HINT(!s.weights.empty() && (args.has("--classifier") || config.eval.feature_network == "classifier"),
                    "pass --classifier FILE (a train-classifier network of the model's classes)",
                    "rejection sampling needs a classifier of the model's ", space.num_classes, " classes");
  s.net = std::dynamic_pointer_cast<Classifier>(load_feature_network("classifier", s.weights, device));
  SEQGAN_CHECK_HINT(s.net->arch().num_classes == space.num_classes,
                    "pass --classifier FILE, a network trained on the classes of the model's tokens",
                    "the classifier ", s.weights, " knows ", s.net->arch().num_classes, " classes, the model ", space.num_classes);
  s.name = s.net->description();
  s.batch = std::max<int64_t>(1, config.eval.batch_size);
  return s;
}

// The --model transformer and the --tokenizer that decodes its codes, checked to share K.
std::pair<LoadedTransformer, LoadedTokenizer> open_models(const Args& args, const torch::Device& device) {
  if (!args.has("--model")) throw UsageError("pass --model RUN/transformer.safetensors");
  if (!args.has("--tokenizer")) throw UsageError("pass --tokenizer RUN/tokenizer.safetensors");
  auto tr = load_transformer(args.get("--model"), device, weights_of(args));
  auto tok = load_tokenizer(args.get("--tokenizer"), device, weights_of(args, "--tokenizer-weights"));
  SEQGAN_CHECK_HINT(tok.config.tokenizer.codebook_size == tr.space.codebook_size,
                    "use the tokenizer whose tokens the model was trained on", "the transformer predicts ",
                    tr.space.codebook_size, " codes, the tokenizer has ", tok.config.tokenizer.codebook_size);
  return {std::move(tr), std::move(tok)};
}

// The grid's rows and the class id of every image, with how they are drawn.
struct SamplePlan {
  struct Row {
    int64_t cls, first, n;  // class (-1: unconditional), first image, images
  };
  std::vector<Row> rows;
  std::vector<int64_t> cond;  // the class id of every image (0 for an unconditional model)
  int64_t per_class = 0, total = 0, batch = 0;
  RejectionOptions rejection;
};

// Grid rows: one per class (per_class images each), or for an unconditional model rows of
// per_class images holding exactly --count images.
SamplePlan plan_samples(const Args& args, const Config& cli, const TokenSpace& ts) {
  SamplePlan p;
  p.per_class = args.get_int("--per-class");
  if (p.per_class < 1) throw UsageError("--per-class must be at least 1");
  if (ts.num_classes > 0) {
    for (const int64_t c : parse_classes(args.get("--classes"), ts.num_classes)) {
      p.rows.push_back({c, static_cast<int64_t>(p.cond.size()), p.per_class});
      p.cond.insert(p.cond.end(), static_cast<size_t>(p.per_class), c);
    }
  } else {
    const int64_t count = args.get_int("--count");
    if (count < 1) throw UsageError("--count must be at least 1");
    for (int64_t first = 0; first < count; first += p.per_class)
      p.rows.push_back({-1, first, std::min(p.per_class, count - first)});
    p.cond.assign(static_cast<size_t>(count), 0);
  }
  p.total = static_cast<int64_t>(p.cond.size());
  p.batch = std::max<int64_t>(1, args.get_int("--batch-size"));
  p.rejection.fraction = cli.sample.accept_fraction;
  p.rejection.threshold = cli.sample.accept_threshold;
  p.rejection.max_draws = cli.sample.max_draws;
  SEQGAN_CHECK_HINT(!p.rejection.active() || ts.num_classes > 0, "sample without sample.accept_fraction / accept_threshold",
                    "rejection sampling scores each image by its class; this model is unconditional");
  return p;
}

// The plan line: what is sampled, in how many batches, with which settings, and where to.
void print_plan(const Args& args, const SamplePlan& p, const LoadedTransformer& tr, const ArSampleOptions& ar) {
  const auto& ts = tr.space;
  const int64_t batches = (p.total + p.batch - 1) / p.batch;
  std::ostringstream guidance;
  if (ar.guidance.active())
    guidance << ", guidance " << ar.guidance.scale << " (" << ar.guidance.schedule << ")";
  std::cout << "plan: " << p.total << " images ("
            << (ts.num_classes > 0 ? str(p.rows.size(), " of the model's ", ts.num_classes, " classes x ", p.per_class)
                                   : std::string("unconditional"))
            << "), " << batches << " batch" << (batches == 1 ? "" : "es") << " of up to " << p.batch << ", "
            << ts.length << " tokens each (" << (tr.model->causal() ? "AR" : "NAR") << ", " << tr.weights << " weights"
            << guidance.str() << ")";
  if (p.rejection.fraction < 1)
    std::cout << "; rejection sampling keeps the best " << p.rejection.fraction << " of the draws";
  if (p.rejection.threshold > 0)
    std::cout << "; rejection sampling keeps p(class) >= " << p.rejection.threshold << " (at most "
              << p.rejection.max_draws << " draws per image)";
  std::cout << " -> " << args.get("--out") << "\n" << std::flush;
}

// The side h of the model's square grid of L = h * h tokens.
int64_t grid_side(const TokenSpace& ts) {
  const int64_t h = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(ts.length))));
  SEQGAN_CHECK(h * h == ts.length, "the model's ", ts.length, " tokens do not form a square grid");
  return h;
}

// Draws codes with the transformer and decodes them with the tokenizer.
struct Sampler {
  LoadedTransformer& tr;
  LoadedTokenizer& tok;
  torch::Device device;
  ArSampleOptions ar;
  NarSampleOptions nar;
  at::Generator gen;
  int64_t batch, h;  // images drawn together; the side of the token grid
  bool estimated;    // the time estimate was printed (once, in the first round of draws)

  // Codes [n, L] for n class ids, `batch` at a time.
  at::Tensor draw(const std::vector<int64_t>& ids) {
    const int64_t n_all = static_cast<int64_t>(ids.size());
    const int64_t n_batches = (n_all + batch - 1) / batch;
    Progress progress(tr.model->causal() ? "sample AR" : "sample NAR", n_all);
    const auto round_start = std::chrono::steady_clock::now();
    const at::Tensor codes = sample_codes(*tr.model, ids, batch, ar, nar, gen, [&](int64_t done) {
      progress.update(done);
      throw_if_stopped("sample");
      if (done == batch && done < n_all && !estimated) {
        // One batch measured: the time the rest will take.
        estimated = true;
        const double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - round_start).count();
        std::ostringstream line;
        line << std::fixed << std::setprecision(0) << "estimated time: " << first * static_cast<double>(n_batches)
             << " s for " << n_batches << " batches (the first took " << std::setprecision(1) << first << " s)\n";
        std::cout << line.str() << std::flush;
      }
    });
    progress.finish();
    return codes;
  }

  // Images [n, c, H, W] of codes [n, L], 64 at a time.
  at::Tensor decode(const at::Tensor& codes) {
    torch::NoGradGuard ng;
    std::vector<at::Tensor> imgs;
    const int64_t n = codes.size(0);
    for (int64_t s = 0; s < n; s += 64)
      imgs.push_back(tok.model->decode_indices(codes.narrow(0, s, std::min<int64_t>(64, n - s)).view({-1, h, h}).to(device))
                         .to(at::kFloat)
                         .cpu());
    return at::cat(imgs);
  }
};

// The sampled codes, and their images when drawing decoded them already (else undefined).
struct Samples {
  at::Tensor codes, images;
};

// The rejection line, a warning when kept images score below the threshold, and rejection.json.
void report_rejection(const ClassScorer& scorer, const RejectionResult& r, const SamplePlan& p,
                      const OutputFolder& output) {
  const RejectionOptions& rejection = p.rejection;
  std::cout << std::fixed << std::setprecision(1) << "rejection sampling [" << scorer.name << "]: kept " << p.total
            << " of " << r.drawn << " draws (acceptance rate " << 100 * r.acceptance_rate() << "%"
            << (r.filled > 0 ? str(", ", r.filled, " below the threshold kept to fill classes") : std::string()) << ")"
            << "; mean p(class) of the kept " << std::setprecision(3) << r.scores.mean().item<double>() << "\n";
  if (r.filled > 0)
    log_warn(str(r.filled, " of the kept images score below sample.accept_threshold ", rejection.threshold,
                 " after ", rejection.max_draws, " draws per image (raise sample.max_draws or lower the threshold)"));
  nlohmann::json j{{"classifier", scorer.name}, {"classifier_weights", scorer.weights}, {"drawn", r.drawn},
                   {"kept", p.total}, {"accepted", r.accepted}, {"filled_below_threshold", r.filled},
                   {"acceptance_rate", r.acceptance_rate()}, {"accept_fraction", rejection.fraction},
                   {"accept_threshold", rejection.threshold}, {"mean_score_kept", r.scores.mean().item<double>()}};
  write_text_atomic(output.file("rejection.json"), j.dump(2) + "\n");
}

// Every draw is decoded once, to be scored; the kept ones' images are taken from those.
Samples sample_with_rejection(const Args& args, const Config& cli, const SamplePlan& p, Sampler& sampler,
                              const OutputFolder& output) {
  auto scorer = open_class_scorer(args, cli, sampler.tr.space, sampler.device);
  std::vector<at::Tensor> decoded;
  const auto r = rejection_sample(
      p.cond, p.rejection, [&](const std::vector<int64_t>& ids) { return sampler.draw(ids); },
      [&](const at::Tensor& codes, const std::vector<int64_t>& ids) {
        decoded.push_back(sampler.decode(codes));
        return scorer.score(decoded.back(), ids);
      });
  Samples s{r.codes, at::cat(decoded).index_select(0, r.drawn_index)};
  report_rejection(scorer, r, p, output);
  return s;
}

// images/000000.png, ...: every image.
void write_images(const OutputFolder& output, const at::Tensor& images, int64_t total) {
  std::filesystem::create_directories(output.file("images"));
  for (int64_t i = 0; i < total; ++i) {
    std::ostringstream name;
    name << output.path() << "/images/" << std::setw(6) << std::setfill('0') << i << ".png";
    write_png(name.str(), images[i]);
    if (i % 64 == 63) throw_if_stopped("sample");
  }
}

// Row captions: the class names the model was trained with, else the tokenizer's data set's,
// else ids.
std::vector<std::string> class_names(const Args& args, const LoadedTransformer& tr, const LoadedTokenizer& tok) {
  std::vector<std::string> names = tr.class_names;
  if (names.empty()) {
    try {
      names = open_dataset(model_data(tok.config, args, args.get("--tokenizer")), "test")->class_names();
    } catch (const Error&) {
    }
  }
  return names;
}

// grid.png: a row per plan row, its first --grid-columns images, captioned with its class.
void write_grid(const Args& args, const SamplePlan& p, const std::vector<std::string>& names, const at::Tensor& images,
                const OutputFolder& output) {
  const int64_t columns = std::max<int64_t>(1, args.get_int("--grid-columns"));
  Figure fig;
  for (const SamplePlan::Row& row : p.rows) {
    const int64_t c = row.cls;
    const std::string caption = c < 0 ? "" : c < static_cast<int64_t>(names.size()) ? names[c] : "class " + std::to_string(c);
    fig.add_row(images.narrow(0, row.first, std::min(row.n, columns)), caption);
  }
  fig.write_png(output.file("grid.png"));
}

// ADM's sample batch: arr_0 uint8 [N, H, W, 3] (grey repeated), arr_1 the class labels.
void write_npz(const OutputFolder& output, const at::Tensor& images, const SamplePlan& p, const TokenSpace& ts) {
  std::map<std::string, at::Tensor> arrays{{"arr_0", adm_images(images)}};
  if (ts.num_classes > 0) arrays["arr_1"] = at::tensor(p.cond, at::kLong);
  npz::save(output.file("samples.npz"), arrays, /*compressed=*/false);
}

// tokens.safetensors: the codes [N, h, h] with their classes (-1: unconditional).
void write_token_file(const OutputFolder& output, const at::Tensor& codes, const SamplePlan& p, const TokenSpace& ts,
                      const LoadedTokenizer& tok) {
  TokenFile file;
  file.indices = codes;
  file.labels = ts.num_classes > 0 ? at::tensor(p.cond, at::kLong) : at::full({p.total}, -1, at::kLong);
  file.codebook_size = ts.codebook_size;
  file.tokenizer_config_json = config_to_json(tok.config, -1);
  file.split = "samples";
  save_tokens(output.file("tokens.safetensors"), file);
}

// The closing line: the throughput and the files written.
void print_summary(const Args& args, const SamplePlan& p, const LoadedTransformer& tr, double secs) {
  std::cout << "sampled " << p.total << " images (" << (tr.model->causal() ? "AR" : "NAR") << ", " << std::fixed
            << std::setprecision(1) << static_cast<double>(p.total) / secs << " img/s, "
            << static_cast<double>(p.total * tr.space.length) / secs << " tokens/s) -> " << args.get("--out")
            << "/grid.png, images/, tokens.safetensors" << (args.flag("--npz") ? ", samples.npz" : "") << "\n";
}

int run_sample(const Args& args) {
  const Config cli = load_config(args);
  const auto device = to_device(resolve_device(cli.device));
  auto [tr, tok] = open_models(args, device);
  const SamplePlan plan = plan_samples(args, cli, tr.space);
  const ArSampleOptions ar = ar_options(cli.sample);
  print_plan(args, plan, tr, ar);
  Sampler sampler{tr, tok, device, ar, nar_options(cli.sample), make_generator(static_cast<uint64_t>(args.get_int("--seed"))),
                  plan.batch, grid_side(tr.space), false};

  // Written whole or not at all: an interruption or a full disk leaves the previous output as it was.
  install_stop_handlers();
  OutputFolder output(args.get("--out"));
  const auto start = std::chrono::steady_clock::now();
  const Samples drawn = plan.rejection.active() ? sample_with_rejection(args, cli, plan, sampler, output)
                                                : Samples{sampler.draw(plan.cond), at::Tensor()};
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const at::Tensor codes = drawn.codes.view({plan.total, sampler.h, sampler.h});
  const at::Tensor images = drawn.images.defined() ? drawn.images : sampler.decode(codes);
  write_images(output, images, plan.total);
  write_grid(args, plan, class_names(args, tr, tok), images, output);
  if (args.flag("--npz")) write_npz(output, images, plan, tr.space);
  write_token_file(output, codes, plan, tr.space, tok);
  throw_if_stopped("sample");
  output.commit();
  print_summary(args, plan, tr, secs);
  return 0;
}

int run_visualize(const Args& args) {
  const Config cli = load_config(args);
  const auto device = to_device(resolve_device(cli.device));
  auto [tr, tok] = open_models(args, device);
  SEQGAN_CHECK_HINT(tr.model->causal(), "pass an AR model (train-transformer --kind ar)",
                    "the visualisation teacher-forces an AR transformer; this one is NAR");
  const DataConfig data_config = model_data(tok.config, args, args.get("--tokenizer"));
  const auto data = open_dataset(data_config, args.get("--split"));
  const Transform transform(eval_transform(data_config));
  const int64_t requested = args.get_int("--count");
  const int64_t count = requested < 0 ? data->size() : std::min<int64_t>(requested, data->size());
  const int64_t shown = std::min<int64_t>(args.get_int("--show"), count);
  const bool conditional = tr.space.num_classes > 0;
  torch::NoGradGuard ng;
  double correct = 0, total = 0;
  FigureOptions fo;
  fo.font_scale = tok.config.data.resolution >= 64 ? 2 : 1;  // headers no wider than a small image
  Figure fig(fo);
  fig.set_column_groups({1, 1, 1}, {"input", "recon", "AR top-1"});
  Progress progress("visualize", count);
  for (int64_t start = 0; start < count; start += 64) {
    std::vector<at::Tensor> xs;
    std::vector<int64_t> labels;
    for (int64_t i = start; i < std::min(count, start + 64); ++i) {
      const auto ex = data->load(i);
      xs.push_back(image_to_tensor(transform.apply(ex.image, 0, 0, i)));
      labels.push_back(std::max<int64_t>(0, ex.label));
    }
    const auto x = at::stack(xs).to(device);
    const int64_t B = x.size(0);
    const auto idx = tok.model->encode_indices(x);  // [B, h, w]
    const auto flat = idx.reshape({B, -1});
    const auto y = conditional ? at::tensor(labels, at::kLong).to(device) : at::Tensor();
    if (conditional) {
      SEQGAN_CHECK_HINT(at::tensor(labels).max().item<int64_t>() < tr.space.num_classes, "visualise on the data the model was trained on",
                        "image label exceeds the model's ", tr.space.num_classes, " classes");
    }
    // One teacher-forced pass: position i sees the true codes before it.
    const auto logits = tr.model->forward(y, flat.narrow(1, 0, flat.size(1) - 1));
    const auto pred = logits.argmax(-1);  // [B, L]
    correct += (pred == flat).sum().item<double>();
    total += static_cast<double>(flat.numel());
    const int64_t first = std::max<int64_t>(0, std::min(B, shown - start));
    if (first > 0) {
      const auto rec = tok.model->decode_indices(idx.narrow(0, 0, first)).to(at::kFloat).cpu();
      const auto ar = tok.model->decode_indices(pred.narrow(0, 0, first).view({first, idx.size(1), idx.size(2)})).to(at::kFloat).cpu();
      for (int64_t i = 0; i < first; ++i) {
        const auto acc = (pred[i] == flat[i]).to(at::kDouble).mean().item<double>();
        std::ostringstream cap;
        cap << std::fixed << std::setprecision(0) << 100 * acc << "%";
        fig.add_row(at::stack({x[i].to(at::kFloat).cpu(), rec[i], ar[i]}), cap.str());
      }
    }
    progress.update(start + B);
  }
  progress.finish();
  const std::string out = args.get("--out");
  fig.write_png(out);
  if (args.has("--json")) {
    const nlohmann::json j{{"top1_accuracy", correct / total}, {"tokens", static_cast<int64_t>(total)},
                           {"images", count}, {"split", args.get("--split")}, {"figure", out}};
    write_text_atomic(args.get("--json"), j.dump(2) + "\n");
  }
  std::cout << std::fixed << std::setprecision(2) << "AR teacher-forced top-1 accuracy " << 100 * correct / total << "% over "
            << static_cast<int64_t>(total) << " tokens of " << count << " " << args.get("--split")
            << " images; figure (input | reconstruction | AR prediction, row caption = that image's top-1): " << out << "\n";
  return 0;
}

}  // namespace

Command train_transformer_command() {
  Command c;
  c.info.name = "train-transformer";
  c.info.summary = "Train the AR (causal) or NAR (MaskGIT) transformer on a token file from `seqgan tokenize`";
  c.config_options("fmnist");
  c.option("--kind", "KIND", "ar", "ar or nar");
  c.option("--tokens", "FILE", "", "training token file (default: runs/PRESET/tokens-train.safetensors)");
  c.option("--val-tokens", "FILE", "", "validation token file (default: hold out train_ar/nar.val_fraction of --tokens)");
  c.option("--out", "DIR", "", "run directory (default: runs/PRESET/KIND)");
  c.flag("--resume", "continue the run in --out from its checkpoint (--set may change its training schedule)");
  c.flag("--overwrite", "delete the run --out holds and start afresh (without it, such a run is refused)");
  c.option("--max-steps", "N", "-1", "stop with a checkpoint after N steps of this invocation (-1: no limit)");
  c.option("--trace", "DIR", "", "record every step (inputs, loss terms, gradients) for seqgan_torch.train_parity");
  c.run = run_train_transformer;
  return c;
}

Command sample_command() {
  Command c;
  c.info.name = "sample";
  c.info.brief = "Sample images from a transformer: grid.png, images/*.png and tokens.safetensors";
  c.info.summary =
      "Sample images from a transformer: grid.png (a row per class), images/*.png and tokens.safetensors.\n"
      "AR settings: sample.temperature, sample.top_k, sample.top_p; NAR: sample.steps,\n"
      "sample.sample_temperature, sample.choice_temperature; both: classifier-free guidance (sample.guidance,\n"
      "sample.guidance_schedule) and rejection sampling (sample.accept_fraction or sample.accept_threshold, scored\n"
      "by --classifier); set them with --set";
  c.config_options("fmnist");
  c.option("--model", "FILE", "", "transformer.safetensors of a train-transformer run");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors that decodes the codes");
  c.weights_option("--weights", "the transformer");
  c.weights_option("--tokenizer-weights", "the tokenizer");
  c.option("--classes", "LIST", "all", "class-conditional models: 'all' or comma-separated class ids, a grid row each");
  c.option("--per-class", "N", "8", "samples per class (per grid row)");
  c.option("--count", "N", "64", "unconditional models: images to sample");
  c.option("--batch-size", "N", "64", "images sampled together");
  c.option("--grid-columns", "N", "16", "images of each row shown in grid.png (all are written to images/)");
  c.option("--seed", "N", "0", "random seed (the same seed gives the same images)");
  c.option("--classifier", "FILE", "", "rejection sampling: the classifier that scores p(class) (default: eval.feature_weights)");
  c.option("--out", "DIR", "samples", "output directory");
  c.flag("--npz", "also write samples.npz, an ADM sample batch (arr_0 uint8 [N, H, W, 3], arr_1 labels) for `evaluate adm`");
  c.run = run_sample;
  return c;
}

Command visualize_command() {
  Command c;
  c.info.name = "visualize";
  c.info.brief = "Teacher-forced AR predictions beside reconstructions, with the top-1 accuracy";
  c.info.summary =
      "Teacher-forced AR predictions beside reconstructions (the paper's section 3.2): the true codes go\n"
      "through the AR model in one pass, the top-1 code at every position is decoded; prints the top-1 accuracy";
  c.config_options("fmnist");
  c.option("--model", "FILE", "", "AR transformer.safetensors");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors the model's tokens came from");
  c.weights_option("--weights", "the transformer");
  c.weights_option("--tokenizer-weights", "the tokenizer");
  c.option("--split", "SPLIT", "test", "train or test");
  c.option("--count", "N", "1000", "images to measure the accuracy on (-1: the whole split)");
  c.option("--show", "N", "8", "images in the figure (a row each)");
  c.option("--out", "FILE", "visualization.png", "figure PNG");
  c.option("--json", "FILE", "", "also write the accuracy as JSON to FILE");
  c.run = run_visualize;
  return c;
}

}  // namespace seqgan::cli
