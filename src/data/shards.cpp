// Tar shards in the webdataset layout: the data set reading them (ShardDataset) and the writer
// that packs any data set into them (pack_shards).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <unordered_map>

#include "data/tar.h"
#include "seqgan/data.h"
#include "seqgan/error.h"
#include "seqgan/log.h"
#include "seqgan/runtime.h"

namespace seqgan {
namespace fs = std::filesystem;

namespace {

constexpr const char* kShardHint =
    "expected tar shards in the webdataset layout: KEY.jpg|jpeg|png|webp with the encoded image, "
    "optionally KEY.cls with its class id (as `seqgan pack-shards` writes them)";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// webdataset's split of a member name: the key is the name up to the first '.' after the last
// '/', the extension is the rest ("a/b.seg.png" -> "a/b", "seg.png"). False for names without
// an extension and for hidden files (".x"), which hold no sample.
bool split_member(const std::string& name, std::string& key, std::string& ext) {
  const size_t slash = name.rfind('/');
  const size_t base = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = name.find('.', base);
  if (dot == std::string::npos || dot == base) return false;
  key = name.substr(0, dot);
  ext = lower(name.substr(dot + 1));
  return true;
}

bool is_image_ext(const std::string& ext) {
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "webp";
}

// The shard files of root: root itself when it is a file, else its *.tar files (any case,
// hidden ones skipped) in byte-wise name order.
std::vector<std::string> list_shards(const std::string& root) {
  std::error_code ec;
  const fs::file_status status = fs::status(root, ec);
  SEQGAN_CHECK_HINT(!ec && fs::exists(status), "check data.root: a folder of .tar shards or one .tar file",
                    "the shard folder or file '", root, "' does not exist");
  if (!fs::is_directory(status)) {
    SEQGAN_CHECK_HINT(fs::is_regular_file(status), "check data.root: a folder of .tar shards or one .tar file",
                      "'", root, "' is neither a folder nor a file");
    return {root};
  }
  std::vector<std::string> shards;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    std::error_code type_ec;  // a dangling symlink is not a shard, not a failure
    if (!name.empty() && name[0] != '.' && lower(p.extension().string()) == ".tar" && it->is_regular_file(type_ec)) {
      shards.push_back(p.string());
    }
  }
  SEQGAN_CHECK(!ec, "cannot list '", root, "': ", ec.message());
  SEQGAN_CHECK_HINT(!shards.empty(),
                    "point data.root at a folder of .tar shards (seqgan pack-shards writes them); for a folder "
                    "of images use data.dataset=image-folder",
                    "no .tar files in '", root, "'");
  std::sort(shards.begin(), shards.end());
  return shards;
}

// The class id of a .cls member: a decimal number below 2^31, whitespace around it allowed.
int64_t parse_class_id(const std::vector<uint8_t>& bytes, const std::string& what) {
  const std::string text(bytes.begin(), bytes.end());
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  size_t i = 0, end = text.size();
  while (i < end && space(text[i])) ++i;
  while (end > i && space(text[end - 1])) --end;
  bool ok = i < end && end - i <= 10;
  int64_t value = 0;
  for (size_t k = i; ok && k < end; ++k) {
    ok = text[k] >= '0' && text[k] <= '9';
    value = value * 10 + (text[k] - '0');
  }
  if (!ok || value > INT32_MAX) {
    throw Error(str(what, ": expected a class id (a decimal number, e.g. \"3\"), found \"",
                    printable(text.data(), std::min<size_t>(text.size(), 40)),
                    text.size() > 40 ? "...\"" : "\""),
                kShardHint);
  }
  return value;
}

// Class names from classes.json ({"classes": [...]}); errors name the file.
std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  SEQGAN_CHECK(in.good(), "cannot open '", path, "'");
  const std::string hint = "classes.json beside the shards holds {\"classes\": [\"name of id 0\", ...]}, as "
                           "seqgan pack-shards writes it; fix or remove it";
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str("'", path, "' is not valid JSON: ", e.what()), hint);
  }
  SEQGAN_CHECK_HINT(j.is_object() && j.contains("classes") && j["classes"].is_array(), hint, "'", path,
                    "' has no \"classes\" list");
  std::vector<std::string> names;
  for (const auto& name : j["classes"]) {
    SEQGAN_CHECK_HINT(name.is_string(), hint, "'", path, "': every class name must be a string, found ",
                      name.dump());
    names.push_back(name.get<std::string>());
  }
  return names;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

ShardDataset::ShardDataset(const std::string& root, ImageSourceOptions options)
    : EncodedImageDataset(options), root_(root) {
  shards_ = list_shards(root);
  offsets_.push_back(0);
  std::string labeled_example, unlabeled_example;  // item names, to show a mix of both
  int64_t max_label = -1;
  std::string max_label_item;
  for (size_t s = 0; s < shards_.size(); ++s) {
    const std::string& shard = shards_[s];
    const TarFile file(shard);
    const std::vector<TarEntry> entries = file.index();

    // Members grouped by key, keys in the order of their first member.
    struct Group {
      int64_t image = -1;  // entry index of the image member
      int64_t cls = -1;    // entry index of the .cls member
    };
    std::vector<Group> groups;
    std::unordered_map<std::string, size_t> by_key;
    for (size_t e = 0; e < entries.size(); ++e) {
      std::string key, ext;
      if (!split_member(entries[e].name, key, ext)) continue;
      const auto found = by_key.emplace(std::move(key), groups.size());
      if (found.second) groups.emplace_back();
      Group& g = groups[found.first->second];
      if (is_image_ext(ext) || ext == "cls") {
        int64_t& slot = ext == "cls" ? g.cls : g.image;
        SEQGAN_CHECK_HINT(slot < 0, kShardHint, "tar shard '", shard, "' has two ",
                          ext == "cls" ? "class" : "image", " members for the key '", found.first->first,
                          "': '", entries[static_cast<size_t>(slot)].name, "' and '", entries[e].name, "'");
        slot = static_cast<int64_t>(e);
      }
    }

    const size_t first_item = items_.size();
    for (const Group& g : groups) {
      if (g.image < 0) continue;  // e.g. KEY.json alone: no sample
      const TarEntry& image = entries[static_cast<size_t>(g.image)];
      Item item;
      item.shard = static_cast<int32_t>(s);
      item.offset = image.offset;
      item.size = image.size;
      item.member = image.name;
      const std::string name = str(shard, "[", image.name, "]");
      if (g.cls >= 0) {
        const TarEntry& cls = entries[static_cast<size_t>(g.cls)];
        const std::string what = str("tar shard '", shard, "' member '", cls.name, "'");
        SEQGAN_CHECK_HINT(cls.size <= 64, kShardHint, what, ": expected a class id (a decimal number), found ",
                          cls.size, " bytes");
        item.label = parse_class_id(file.read(cls.offset, cls.size, what), what);
        if (labeled_example.empty()) labeled_example = name;
        if (item.label > max_label) {
          max_label = item.label;
          max_label_item = name;
        }
      } else if (unlabeled_example.empty()) {
        unlabeled_example = name;
      }
      items_.push_back(std::move(item));
    }
    SEQGAN_CHECK_HINT(items_.size() > first_item, kShardHint, "tar shard '", shard, "' holds no image member (",
                      entries.size(), " regular files, none named KEY.jpg, .jpeg, .png or .webp)");
    offsets_.push_back(static_cast<int64_t>(items_.size()));
  }
  SEQGAN_CHECK_HINT(labeled_example.empty() || unlabeled_example.empty(),
                    "either every image has a KEY.cls member (labeled data) or none has (unlabeled data)",
                    "the shards in '", root, "' mix images with a class (e.g. ", labeled_example,
                    ") and images without one (e.g. ", unlabeled_example, ")");
  if (labeled_example.empty()) return;  // unlabeled: no classes

  const fs::path dir = fs::is_directory(root) ? fs::path(root) : fs::path(root).parent_path();
  const std::string classes_file = (dir / "classes.json").string();
  if (fs::exists(classes_file)) {
    classes_ = read_class_names(classes_file);
    SEQGAN_CHECK_HINT(max_label < static_cast<int64_t>(classes_.size()),
                      "classes.json must name every class id the shards use",
                      "'", classes_file, "' names ", classes_.size(), " classes, but ", max_label_item,
                      " has class id ", max_label);
  } else {
    for (int64_t c = 0; c <= max_label; ++c) classes_.push_back(std::to_string(c));
  }
}

int64_t ShardDataset::size() const { return static_cast<int64_t>(items_.size()); }

std::vector<uint8_t> ShardDataset::read_bytes(int64_t index) const {
  check_index(index);
  const Item& item = items_[static_cast<size_t>(index)];
  // One open per read keeps the data set free of open files (thousands of shards would exceed
  // the descriptor limit); the open costs microseconds next to decoding the image.
  const TarFile file(shards_[static_cast<size_t>(item.shard)]);
  return file.read(item.offset, item.size, item_name(index));
}

std::string ShardDataset::item_name(int64_t index) const {
  check_index(index);
  const Item& item = items_[static_cast<size_t>(index)];
  return str(shards_[static_cast<size_t>(item.shard)], "[", item.member, "]");
}

int64_t ShardDataset::item_label(int64_t index) const {
  check_index(index);
  return items_[static_cast<size_t>(index)].label;
}

// ---------------------------------------------------------------------------------------------

std::vector<std::string> pack_shards(const Dataset& dataset, const std::string& out_dir,
                                     const PackShardsOptions& options) {
  SEQGAN_CHECK_HINT(options.per_shard >= 1, "use a positive number of images per shard",
                    "expected per_shard >= 1, got ", options.per_shard);
  SEQGAN_CHECK_HINT(!options.prefix.empty() && options.prefix.find('/') == std::string::npos &&
                        options.prefix[0] != '.',
                    "use a plain file name prefix such as \"shard\"", "invalid shard prefix '", options.prefix, "'");
  const int64_t n = dataset.size();
  SEQGAN_CHECK(n > 0, "data set '", dataset.description(), "' is empty: nothing to pack");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  SEQGAN_CHECK(!ec, "cannot create the shard folder '", out_dir, "': ", ec.message());
  // A folder of shards is read as one data set: shards of an earlier pack would join this one.
  for (auto it = fs::directory_iterator(out_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    SEQGAN_CHECK_HINT(lower(it->path().extension().string()) != ".tar",
                      "pack into an empty folder (every .tar file in a folder belongs to one data set)",
                      "the shard folder '", out_dir, "' already holds '", it->path().filename().string(), "'");
  }
  SEQGAN_CHECK(!ec, "cannot list '", out_dir, "': ", ec.message());

  // The order the images are written in: the data set's, or a shuffle of the seed.
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (options.shuffle) {
    std::mt19937_64 rng(options.seed);
    shuffle_indices(order.data(), n, rng);
  }

  const auto* encoded = dynamic_cast<const EncodedImageDataset*>(&dataset);
  const bool skip_bad = encoded != nullptr && encoded->source_options().skip_bad;
  const int num_classes = dataset.num_classes();
  const int key_width = std::max<int>(8, static_cast<int>(std::to_string(n - 1).size()));
  std::vector<std::string> paths;
  std::vector<std::string> skipped;
  std::unique_ptr<TarWriter> writer;
  int64_t in_shard = 0;
  Progress progress("pack-shards", n, 1.0);
  for (int64_t pos = 0; pos < n; ++pos) {
    const int64_t i = order[static_cast<size_t>(pos)];
    std::vector<uint8_t> bytes;
    std::string ext;
    int64_t label = -1;
    if (encoded != nullptr) {
      // The stored bytes as they are: no decoding and re-encoding, no loss.
      try {
        bytes = encoded->read_bytes(i);
        ext = image_format_extension(sniff_image_format(bytes.data(), bytes.size()));
        SEQGAN_CHECK_HINT(!ext.empty(), "remove or convert it, or set data.skip_bad_files to leave it out",
                          encoded->item_name(i), " is not a JPEG, PNG or WebP image (by its first bytes)");
      } catch (const Error&) {
        if (!skip_bad) throw;
        skipped.push_back(encoded->item_name(i));
        continue;
      }
      label = encoded->item_label(i);
    } else {
      RawExample raw = dataset.load(i);
      bytes = encode_png(raw.image);
      ext = "png";
      label = raw.label;
    }
    if (num_classes > 0) {
      SEQGAN_CHECK(label >= 0 && label < num_classes, "image ", i, " of '", dataset.description(), "' has label ",
                   label, ", outside the data set's ", num_classes, " classes");
    }
    if (!writer) {
      char name[32];
      std::snprintf(name, sizeof(name), "-%06zu.tar", paths.size());
      writer = std::make_unique<TarWriter>((fs::path(out_dir) / (options.prefix + name)).string());
    }
    std::string key = std::to_string(i);
    key.insert(0, static_cast<size_t>(key_width) - std::min(key.size(), static_cast<size_t>(key_width)), '0');
    writer->add(key + "." + ext, bytes.data(), bytes.size());
    if (num_classes > 0) writer->add(key + ".cls", std::to_string(label));
    if (++in_shard == options.per_shard) {
      writer->finish();
      paths.push_back(writer->path());
      writer.reset();
      in_shard = 0;
    }
    progress.update(pos + 1);
    throw_if_stopped("pack-shards");
  }
  if (writer) {
    writer->finish();
    paths.push_back(writer->path());
  }
  progress.finish();
  if (!skipped.empty()) {
    std::string list;
    for (size_t k = 0; k < skipped.size() && k < 10; ++k) list += "\n  " + skipped[k];
    log_warn(str("pack-shards: left out ", skipped.size(), " unreadable image(s) of '", dataset.description(),
                 "' (data.skip_bad_files):", list, skipped.size() > 10 ? "\n  ..." : ""));
  }
  SEQGAN_CHECK_HINT(!paths.empty(), "check the data source with `seqgan dataset inspect`",
                    "none of the ", n, " images of '", dataset.description(), "' could be read");
  if (num_classes > 0) dataset.write_class_list(out_dir);
  return paths;
}

}  // namespace seqgan
