// `seqgan dataset inspect|export` and `seqgan pack-shards`: look at a data source before a week of
// training, see exactly what the model will see, and move a data set into a few large tar shards.
#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/cli.h"
#include "data/open.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"
#include "train/run.h"

namespace seqgan::cli {
namespace {

using nlohmann::ordered_json;

std::string split_option(const Args& args) {
  const std::string split = args.get("--split");
  if (split != "train" && split != "test") throw UsageError(str("--split must be train or test, got '", split, "'"));
  return split;
}

// How many of n items to visit: --count (-1: all).
int64_t count_of(const Args& args, int64_t n) {
  const int64_t count = args.get_int("--count");
  if (count < -1 || count == 0) throw UsageError(str("--count must be positive or -1 (all), got ", count));
  return count < 0 ? n : std::min(count, n);
}

struct Inspection {
  int64_t decoded = 0;
  std::map<int64_t, int64_t> per_class;              // label -> images (-1: unlabeled)
  std::map<std::pair<int, int>, int64_t> sizes;      // (width, height) -> images
  std::vector<std::pair<int64_t, std::string>> failures;  // index, item and reason
};

// Decodes items [0, count) on `threads` threads; a failure is recorded, never thrown.
Inspection inspect(const Dataset& data, int64_t count, int threads) {
  Inspection out;
  std::mutex mutex;
  std::atomic<int64_t> next{0}, done{0};
  Progress progress("inspect", count, 1.0);
  auto work = [&] {
    for (int64_t i; (i = next++) < count;) {
      try {
        const RawExample raw = data.load(i);
        std::lock_guard<std::mutex> lock(mutex);
        ++out.decoded;
        ++out.per_class[raw.label];
        ++out.sizes[{raw.image.width, raw.image.height}];
      } catch (const Error& e) {
        std::lock_guard<std::mutex> lock(mutex);
        out.failures.emplace_back(i, e.message());
      }
      const int64_t d = ++done;
      if (d % 256 == 0) progress.update(d);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  progress.finish();
  std::sort(out.failures.begin(), out.failures.end());
  return out;
}

// A copy of the data settings that reports bad items instead of substituting them.
DataConfig strict(DataConfig data) {
  data.skip_bad_files = false;
  return data;
}

int run_inspect(const Args& args, const Config& config) {
  const std::string split = split_option(args);
  const auto data = open_dataset(strict(config.data), split);
  const int64_t count = count_of(args, data->size());
  const Inspection r = inspect(*data, count, std::max(1, config.data.num_workers));
  const auto names = data->class_names();
  const auto* encoded = dynamic_cast<const EncodedImageDataset*>(data.get());

  ordered_json j;
  j["source"] = data->description();
  j["kind"] = config.data.dataset;
  j["split"] = split;
  j["size"] = data->size();
  j["inspected"] = count;
  j["decoded"] = r.decoded;
  j["num_classes"] = data->num_classes();
  j["shards"] = data->shard_offsets().empty() ? 0 : data->shard_offsets().size() - 1;
  ordered_json classes = ordered_json::array();
  for (const auto& [label, n] : r.per_class) {
    const std::string name = label < 0 ? "(unlabeled)" : label < static_cast<int64_t>(names.size()) ? names[label] : "?";
    classes.push_back({{"label", label}, {"name", name}, {"images", n}});
  }
  j["classes"] = classes;
  std::vector<std::pair<std::pair<int, int>, int64_t>> sizes(r.sizes.begin(), r.sizes.end());
  std::stable_sort(sizes.begin(), sizes.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  ordered_json size_list = ordered_json::array();
  for (const auto& [wh, n] : sizes) size_list.push_back({{"width", wh.first}, {"height", wh.second}, {"images", n}});
  j["sizes"] = size_list;
  ordered_json failures = ordered_json::array();
  for (const auto& [index, why] : r.failures) {
    failures.push_back({{"index", index}, {"item", encoded ? encoded->item_name(index) : std::to_string(index)},
                        {"error", why}});
  }
  j["failures"] = failures;

  if (args.flag("--json")) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << data->description() << " (" << config.data.dataset << ", " << split << ")\n"
              << "  images: " << data->size() << ", inspected " << count << ", decoded " << r.decoded << ", failed "
              << r.failures.size() << "\n";
    if (!data->shard_offsets().empty()) std::cout << "  shards: " << data->shard_offsets().size() - 1 << "\n";
    std::cout << "  classes: " << data->num_classes() << "\n";
    const size_t shown_classes = std::min<size_t>(classes.size(), 20);
    for (size_t i = 0; i < shown_classes; ++i) {
      std::cout << "    " << classes[i]["label"].get<int64_t>() << "  " << classes[i]["name"].get<std::string>() << ": "
                << classes[i]["images"].get<int64_t>() << "\n";
    }
    if (classes.size() > shown_classes) std::cout << "    ... " << classes.size() - shown_classes << " more (--json lists all)\n";
    std::cout << "  image sizes (width x height: images):\n";
    const size_t shown_sizes = std::min<size_t>(sizes.size(), 10);
    for (size_t i = 0; i < shown_sizes; ++i)
      std::cout << "    " << sizes[i].first.first << "x" << sizes[i].first.second << ": " << sizes[i].second << "\n";
    if (sizes.size() > shown_sizes) std::cout << "    ... " << sizes.size() - shown_sizes << " more sizes\n";
    for (const auto& f : failures) std::cout << "  FAILED " << f["item"].get<std::string>() << ": " << f["error"].get<std::string>() << "\n";
  }
  if (!r.failures.empty()) {
    std::cerr << "dataset inspect: " << r.failures.size() << " of " << count
              << " images cannot be decoded\n---> HINT: remove or re-create them, or train with "
                 "--set data.skip_bad_files=true (each is then replaced by the next decodable image)\n";
    return 1;
  }
  return 0;
}

int run_export(const Args& args, const Config& config) {
  if (!args.has("--out")) throw UsageError("pass --out DIR (the folder for the PNG files)");
  const std::string split = split_option(args);
  const auto data = open_dataset(config.data, split);
  const int64_t count = count_of(args, data->size());
  // Written whole or not at all (see OutputFolder).
  install_stop_handlers();
  OutputFolder output(args.get("--out"));
  const std::string out = args.get("--out");
  const Transform transform(eval_transform(config.data));
  const int digits = std::max<int>(6, static_cast<int>(std::to_string(count - 1).size()));
  Progress progress("export", count, 1.0);
  for (int64_t i = 0; i < count; ++i) {
    const Image image = transform.apply(data->load(i).image, config.seed, 0, i);
    std::string name = std::to_string(i);
    name.insert(0, static_cast<size_t>(std::max<int>(0, digits - static_cast<int>(name.size()))), '0');
    write_png(output.file(name + ".png"), image);
    progress.update(i + 1);
    throw_if_stopped("dataset export");
  }
  progress.finish();
  output.commit();
  std::cout << "wrote " << count << " images of " << data->description() << " (" << split << ") to " << out
            << ", as the model sees them in evaluation (" << config.data.resolution << "x" << config.data.resolution
            << ", " << (config.data.preprocess == "adm" ? "ADM center_crop_arr" : "resize " + config.data.resize_filter + " + centre crop")
            << ")\n";
  return 0;
}

int run_dataset(const Args& args) {
  const std::string action = args.positionals().at(0);
  if (action != "inspect" && action != "export")
    throw UsageError(str("unknown action '", action, "': use inspect or export"));
  const Config config = load_config(args);
  return action == "inspect" ? run_inspect(args, config) : run_export(args, config);
}

int run_pack_shards(const Args& args) {
  if (!args.has("--out")) throw UsageError("pass --out DIR (the folder for the tar shards)");
  const Config config = load_config(args);
  const auto data = open_dataset(strict(config.data), split_option(args));
  PackShardsOptions options;
  options.per_shard = args.get_int("--per-shard");
  if (options.per_shard < 1) throw UsageError(str("--per-shard must be positive, got ", options.per_shard));
  options.shuffle = !args.flag("--no-shuffle");
  options.seed = static_cast<uint64_t>(config.seed);
  options.prefix = args.get("--prefix");
  const auto shards = pack_shards(*data, args.get("--out"), options);
  std::cout << "wrote " << data->size() << " images of " << data->description() << " into " << shards.size()
            << " shard(s) in " << args.get("--out") << (options.shuffle ? " (in a random order of the seed)" : "")
            << "\nuse them with --set data.dataset=shards --set data.root=" << args.get("--out") << "\n";
  return 0;
}

}  // namespace

Command dataset_command() {
  Command c;
  c.info.name = "dataset";
  c.info.brief = "Check a data source (inspect) or write its first images as the model sees them (export)";
  c.info.summary =
      "Check a data source: `inspect` decodes every image (count, classes, image sizes, the images that fail,\n"
      "each named by its file or key; exit 1 if any fails), `export` writes the first --count images as PNG\n"
      "files named by their index, exactly as the model sees them after the evaluation transforms";
  c.positional("inspect|export");
  c.config_options();
  c.option("--split", "NAME", "train", "train or test (data.val_root)");
  c.option("--count", "N", "-1", "images to visit from the start of the data set (-1: all)");
  c.option("--out", "DIR", "", "export: the folder for the PNG files");
  c.flag("--json", "inspect: print JSON");
  c.run = run_dataset;
  return c;
}

Command pack_shards_command() {
  Command c;
  c.info.name = "pack-shards";
  c.info.brief = "Write a data set as webdataset tar shards (data.dataset=shards)";
  c.info.summary =
      "Write the configured data set (a folder, an LMDB, IDX files) as tar shards in the webdataset layout\n"
      "(KEY.jpg|png|webp with the stored bytes, KEY.cls), for data.dataset=shards";
  c.config_options();
  c.option("--split", "NAME", "train", "train or test (data.val_root)");
  c.option("--out", "DIR", "", "the folder for the shards");
  c.option("--per-shard", "N", "10000", "images per shard");
  c.option("--prefix", "NAME", "shard", "shard file names: PREFIX-000000.tar, ...");
  c.flag("--no-shuffle", "keep the data set's order (default: a random order of the seed, so shards mix classes)");
  c.run = run_pack_shards;
  return c;
}

}  // namespace seqgan::cli
