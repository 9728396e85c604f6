// `seqgan reconstruct`, `seqgan tokenize`, `seqgan decode`: using a trained tokenizer.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <set>

#include "cli/cli.h"
#include "cli/signals.h"
#include "eval/psnr.h"
#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/image.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokens.h"
#include "train/run.h"

namespace seqgan::cli {
namespace {

LoadedTokenizer open_tokenizer(const Args& args, const Config& config) {
  const std::string path = args.get("--tokenizer");
  if (path.empty()) throw UsageError("pass --tokenizer RUN/tokenizer.safetensors");
  return load_tokenizer(path, to_device(resolve_device(config.device)), weights_of(args));
}

int run_reconstruct(const Args& args) {
  const Config cli_config = load_config(args);
  const auto paths = args.all("--tokenizer");
  if (paths.empty()) throw UsageError("pass --tokenizer RUN/tokenizer.safetensors (repeat it to compare tokenizers)");
  const auto device = to_device(resolve_device(cli_config.device));
  std::vector<LoadedTokenizer> toks;
  for (const auto& p : paths) {
    toks.push_back(load_tokenizer(p, device, weights_of(args)));
    const auto& a = toks.front().config.data;
    const auto& b = toks.back().config.data;
    SEQGAN_CHECK_HINT(a.channels == b.channels && a.resolution == b.resolution && a.dataset == b.dataset,
                      "compare tokenizers trained on the same data", p, " was trained on other data than ", paths.front());
  }
  const DataConfig data_config = model_data(toks.front().config, args, paths.front());
  const auto data = open_dataset(data_config, args.get("--split"));
  const Transform transform(eval_transform(data_config));
  const int64_t requested = args.get_int("--count");
  const int64_t count = requested < 0 ? data->size() : std::min<int64_t>(requested, data->size());
  const int64_t shown = std::min<int64_t>(args.get_int("--show"), count);
  torch::NoGradGuard ng;
  struct Score {
    double psnr_sum = 0;
    at::Tensor hist;
    at::Tensor grid;
  };
  std::vector<Score> scores(toks.size());
  for (size_t t = 0; t < toks.size(); ++t) scores[t].hist = at::zeros({toks[t].config.tokenizer.codebook_size}, at::kLong);
  at::Tensor grid_in;
  Progress progress("reconstruct", count);
  for (int64_t start = 0; start < count; start += 64) {
    std::vector<at::Tensor> imgs;
    for (int64_t i = start; i < std::min(count, start + 64); ++i)
      imgs.push_back(image_to_tensor(transform.apply(data->load(i).image, 0, 0, i)));
    const auto x = at::stack(imgs).to(device);
    if (!grid_in.defined()) grid_in = x.slice(0, 0, shown).cpu();
    for (size_t t = 0; t < toks.size(); ++t) {
      const auto out = toks[t].model->forward(x);
      const auto rec = out.reconstruction.to(at::kFloat);
      scores[t].psnr_sum += psnr(x, rec).sum().item<double>();
      scores[t].hist += code_histogram(out.quant.indices, scores[t].hist.size(0));
      if (!scores[t].grid.defined()) scores[t].grid = rec.slice(0, 0, shown).cpu();
    }
    progress.update(start + x.size(0));
    throw_if_stopped("reconstruct");
  }
  progress.finish();
  const std::string out = args.get("--out");
  if (!out.empty()) {
    // Blocks of up to 8 images: the inputs, then each tokenizer's reconstructions, captioned
    // with the tokenizer's run directory (its phase where the directories share a name).
    std::vector<std::string> captions;
    for (size_t t = 0; t < toks.size(); ++t) {
      const std::string dir = std::filesystem::path(paths[t]).parent_path().filename().string();
      captions.push_back(toks.size() == 1 ? "recon" : dir.empty() ? "phase " + std::to_string(toks[t].phase) : dir);
    }
    if (std::set<std::string>(captions.begin(), captions.end()).size() < captions.size())
      for (size_t t = 0; t < toks.size(); ++t) captions[t] = "#" + std::to_string(t + 1) + " phase " + std::to_string(toks[t].phase);
    Figure fig;
    const int64_t cols = std::min<int64_t>(shown, 8);
    for (int64_t s = 0; s + cols <= shown; s += cols) {
      fig.add_row(grid_in.slice(0, s, s + cols), "input");
      for (size_t t = 0; t < toks.size(); ++t)
        fig.add_row(scores[t].grid.slice(0, s, s + cols), captions[t]);
    }
    fig.write_png(out);
  }
  std::cout << std::fixed << std::setprecision(2);
  for (size_t t = 0; t < toks.size(); ++t) {
    const int64_t K = scores[t].hist.size(0);
    // Usage over every code of every measured image, and the perplexity of that histogram.
    const CodeUsage u = code_usage(scores[t].hist);
    std::cout << paths[t] << " (phase " << toks[t].phase << ", step " << toks[t].step << "): PSNR "
              << scores[t].psnr_sum / static_cast<double>(count) << " dB, codebook usage " << 100.0 * u.fraction << "% ("
              << u.used << " of " << K << " codes), perplexity " << u.perplexity << "\n";
  }
  std::cout << "measured on " << count << " " << args.get("--split") << " images"
            << (out.empty() ? "" : "; grid (inputs over reconstructions): " + out) << "\n";
  return 0;
}

int run_tokenize(const Args& args) {
  const Config cli_config = load_config(args);
  auto tok = open_tokenizer(args, cli_config);
  const std::string split = args.get("--split");
  const DataConfig data_config = model_data(tok.config, args, args.get("--tokenizer"));
  const auto data = open_dataset(data_config, split);
  const std::string out =
      args.has("--out") ? args.get("--out") : "runs/" + cli_config.preset + "/tokens-" + split + ".safetensors";
  install_stop_handlers();
  const auto out_lock = lock_output_file(out);
  const auto tokens = tokenize_dataset(*tok.model, *data, eval_transform(data_config), args.get_int("--batch-size"),
                                       args.get_int("--limit"));
  SkippedFiles(data, out + ".skipped.txt").report();
  TokenFile file;
  file.indices = tokens.first;
  file.labels = tokens.second;
  file.codebook_size = tok.config.tokenizer.codebook_size;
  file.class_names = data->class_names();
  file.tokenizer_config_json = config_to_json(tok.config, -1);
  file.split = split;
  throw_if_stopped("tokenize");
  save_tokens(out, file);
  std::cout << "wrote " << file.indices.size(0) << " token maps of " << file.indices.size(1) << "x" << file.indices.size(2)
            << " (codebook " << file.codebook_size << ") to " << out << "\n";
  return 0;
}

int run_decode(const Args& args) {
  const Config cli_config = load_config(args);
  auto tok = open_tokenizer(args, cli_config);
  const auto file = load_tokens(args.get("--tokens"));
  SEQGAN_CHECK_HINT(file.codebook_size == tok.config.tokenizer.codebook_size, "decode with the tokenizer that made the tokens",
                    "token file has codebook size ", file.codebook_size, ", the tokenizer ", tok.config.tokenizer.codebook_size);
  const std::string out = args.get("--out");
  std::filesystem::create_directories(out);
  const int64_t count = std::min<int64_t>(args.get_int("--count"), file.indices.size(0));
  const auto device = tok.model->parameters()[0].device();
  torch::NoGradGuard ng;
  for (int64_t start = 0; start < count; start += 64) {
    const auto idx = file.indices.slice(0, start, std::min(count, start + 64)).to(device);
    const auto imgs = tok.model->decode_indices(idx).to(at::kFloat).cpu();
    for (int64_t i = 0; i < imgs.size(0); ++i) {
      std::ostringstream name;
      name << out << "/" << std::setw(6) << std::setfill('0') << start + i << ".png";
      write_png(name.str(), imgs[i]);
    }
  }
  std::cout << "wrote " << count << " images to " << out << "\n";
  return 0;
}

}  // namespace

Command reconstruct_command() {
  Command c;
  c.info.name = "reconstruct";
  c.info.brief = "Reconstruct data-set images with a tokenizer: a grid, the PSNR and the codebook usage";
  c.info.summary = "Reconstruct data-set images with a tokenizer: a grid of inputs over reconstructions, the PSNR and the codebook usage";
  c.config_options("fmnist");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors of a train-tokenizer run (repeat to compare)", true);
  c.weights_option("--weights", "the tokenizer");
  c.option("--split", "SPLIT", "test", "train or test");
  c.option("--count", "N", "1000", "images to measure the PSNR and usage on (-1: the whole split)");
  c.option("--show", "N", "16", "images in the grid");
  c.option("--out", "FILE", "reconstructions.png", "grid PNG (empty: none)");
  c.run = run_reconstruct;
  return c;
}

Command tokenize_command() {
  Command c;
  c.info.name = "tokenize";
  c.info.summary = "Encode a data set into a token file (indices and labels, safetensors)";
  c.config_options("fmnist");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors of a train-tokenizer run");
  c.weights_option("--weights", "the tokenizer");
  c.option("--split", "SPLIT", "train", "train or test");
  c.option("--out", "FILE", "", "token file (default: runs/PRESET/tokens-SPLIT.safetensors)");
  c.option("--batch-size", "N", "32", "images per forward pass (on a CPU, 16-32 run fastest: larger batches leave the caches)");
  c.option("--limit", "N", "-1", "encode only the first N images (-1: all)");
  c.run = run_tokenize;
  return c;
}

Command decode_command() {
  Command c;
  c.info.name = "decode";
  c.info.summary = "Decode a token file into PNG images";
  c.config_options("fmnist");
  c.option("--tokenizer", "FILE", "", "tokenizer.safetensors of a train-tokenizer run");
  c.weights_option("--weights", "the tokenizer");
  c.option("--tokens", "FILE", "", "token file from tokenize or sample");
  c.option("--out", "DIR", "decoded", "output directory");
  c.option("--count", "N", "64", "images to decode");
  c.run = run_decode;
  return c;
}

}  // namespace seqgan::cli
