// Folders of JPEG/PNG/WebP images, what every data set of encoded images shares (decoding and
// skipping bad items), and what all data sets share (Dataset's own methods).
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <set>

#include <unistd.h>

#include "seqgan/data.h"

#include "io/files.h"
#include "seqgan/error.h"

namespace seqgan {
namespace fs = std::filesystem;

Example Dataset::get(int64_t index) const {
  RawExample raw = load(index);
  return {image_to_tensor(raw.image), raw.label};
}

void Dataset::check_index(int64_t index) const {
  SEQGAN_CHECK(index >= 0 && index < size(), "index ", index, " is outside [0, ", size(), ") of data set '",
               description(), "'");
}

void Dataset::write_class_list(const std::string& run_dir) const {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  SEQGAN_CHECK(!ec, "cannot create run folder '", run_dir, "': ", ec.message());
  const std::string path = (fs::path(run_dir) / "classes.json").string();
  write_file_atomic(path, nlohmann::json{{"classes", class_names()}}.dump(2) + "\n");
}

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp";
}

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// All image files below dir, recursively, sorted byte-wise so the order is the same everywhere.
std::vector<std::string> scan(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  auto it = fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink, ec);
  SEQGAN_CHECK(!ec, "cannot list '", dir.string(), "': ", ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    SEQGAN_CHECK(!ec, "cannot list below '", dir.string(), "': ", ec.message());
    std::error_code type_ec;  // a dangling symlink is neither, not a failure
    if (is_hidden(it->path())) {
      if (it->is_directory(type_ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(type_ec) && is_image_name(it->path())) out.push_back(it->path().string());
  }
  SEQGAN_CHECK(!ec, "cannot list below '", dir.string(), "': ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

ImageFolder::ImageFolder(const std::string& root, ImageSourceOptions options)
    : EncodedImageDataset(options), root_(root) {
  SEQGAN_CHECK_HINT(fs::is_directory(root), "point the data root at a folder of images",
                    "'", root, "' is not a folder");

  std::vector<fs::path> subdirs;
  std::vector<std::string> loose;
  std::error_code ec;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& p = it->path();
    if (is_hidden(p)) continue;
    std::error_code type_ec;  // a dangling symlink is neither, not a failure
    if (it->is_directory(type_ec)) subdirs.push_back(p);
    else if (it->is_regular_file(type_ec) && is_image_name(p)) loose.push_back(p.string());
  }
  SEQGAN_CHECK(!ec, "cannot list '", root, "': ", ec.message());
  std::sort(subdirs.begin(), subdirs.end());
  std::sort(loose.begin(), loose.end());

  const std::vector<std::string>& given = options.classes;
  for (const fs::path& dir : subdirs) {
    std::vector<std::string> files = scan(dir);
    if (files.empty()) continue;  // e.g. a folder of notes; not a class
    SEQGAN_CHECK_HINT(loose.empty(), "move the loose images into a class folder, or point the root at them",
                      "'", root, "' mixes class folders (e.g. '", dir.filename().string(),
                      "') with images directly inside it (e.g. '", loose.front(), "')");
    const std::string name = dir.filename().string();
    int64_t label = static_cast<int64_t>(classes_.size());
    if (!given.empty()) {
      const auto it = std::find(given.begin(), given.end(), name);
      SEQGAN_CHECK_HINT(it != given.end(), "give the validation data the training data's classes (or remove the folder)",
                        "'", root, "' has a class folder '", name, "' that the training data (", given.size(),
                        " classes) does not have");
      label = it - given.begin();
    } else {
      classes_.push_back(name);
    }
    for (std::string& f : files) {
      files_.push_back(std::move(f));
      labels_.push_back(label);
    }
  }
  if (!given.empty() && !files_.empty()) classes_ = given;  // labels are indices into the training classes
  if (files_.empty()) {
    files_ = std::move(loose);
    labels_.assign(files_.size(), -1);
    if (!options.labels_file.empty()) {
      label_loose_images(options.labels_file, given);
    } else {
      SEQGAN_CHECK_HINT(given.empty(),
                        "label them with data.val_labels=FILE (lines 'IMAGE CLASS', or ImageNet's LOC_val_solution.csv), "
                        "or move each image into a folder named by its class",
                        "'", root, "' holds ", files_.size(), " images directly, with no class folders, but the training "
                        "data has ", given.size(), " classes (ImageNet's flat validation layout?)");
    }
  }
  SEQGAN_CHECK_HINT(!files_.empty(), "expected .png, .jpg, .jpeg or .webp files (in class sub-folders or directly)",
                    "no images found below '", root, "'");
}

std::map<std::string, std::string> parse_image_labels(const std::string& text, const std::string& source) {
  std::map<std::string, std::string> labels;
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    for (char& c : line)
      if (c == ',' || c == '\t') c = ' ';
    std::istringstream words(line);
    std::string image, cls;
    if (!(words >> image)) continue;  // a blank line
    if (line_no == 1 && image == "ImageId") continue;
    SEQGAN_CHECK_HINT(static_cast<bool>(words >> cls), "write each line as 'IMAGE CLASS'", source, " line ", line_no,
                      ": '", printable(image.data(), std::min<size_t>(image.size(), 80)), "' has no class");
    const std::string stem = fs::path(image).stem().string();
    SEQGAN_CHECK_HINT(labels.emplace(stem, cls).second, "name each image once", source, " line ", line_no,
                      ": image '", printable(stem.data(), std::min<size_t>(stem.size(), 80)), "' is labelled twice");
  }
  return labels;
}

void ImageFolder::label_loose_images(const std::string& labels_file, const std::vector<std::string>& classes) {
  const std::string text = read_file_text(labels_file, "check data.val_labels (the labels file)");
  const auto labels = parse_image_labels(text, labels_file);
  if (classes.empty()) {
    std::set<std::string> names;
    for (const auto& [image, cls] : labels) names.insert(cls);
    classes_.assign(names.begin(), names.end());
  } else {
    classes_ = classes;
  }
  for (size_t i = 0; i < files_.size(); ++i) {
    const std::string stem = fs::path(files_[i]).stem().string();
    const auto it = labels.find(stem);
    SEQGAN_CHECK_HINT(it != labels.end(), "label every image of the folder", labels_file, " has no class for '",
                      files_[i], "'");
    const auto c = std::find(classes_.begin(), classes_.end(), it->second);
    SEQGAN_CHECK_HINT(c != classes_.end(), "give the validation data the training data's classes", labels_file,
                      " gives '", files_[i], "' the class '", it->second, "', which the training data (",
                      classes_.size(), " classes) does not have");
    labels_[i] = c - classes_.begin();
  }
}

std::vector<std::string> ImageFolder::class_folders(const std::string& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (is_hidden(it->path()) || !it->is_directory(type_ec)) continue;
    // Holds an image somewhere below: stop at the first one.
    bool any = false;
    std::error_code walk_ec;
    for (auto f = fs::recursive_directory_iterator(it->path(), fs::directory_options::follow_directory_symlink, walk_ec);
         !walk_ec && f != fs::recursive_directory_iterator() && !any; f.increment(walk_ec)) {
      std::error_code t;
      if (is_hidden(f->path())) {
        if (f->is_directory(t)) f.disable_recursion_pending();
        continue;
      }
      any = f->is_regular_file(t) && is_image_name(f->path());
    }
    if (any) names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

const std::string& ImageFolder::path(int64_t index) const {
  check_index(index);
  return files_[static_cast<size_t>(index)];
}

int64_t ImageFolder::label(int64_t index) const {
  check_index(index);
  return labels_[static_cast<size_t>(index)];
}

std::vector<uint8_t> ImageFolder::read_bytes(int64_t index) const { return read_file(path(index)); }

EncodedImageDataset::EncodedImageDataset(ImageSourceOptions options) : options_(options) {
  SEQGAN_CHECK_HINT(options_.channels == 1 || options_.channels == 3, "use 1 (grey) or 3 (RGB)",
                    "expected 1 or 3 channels, got ", options_.channels);
}

int64_t EncodedImageDataset::bad_count() const {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  return static_cast<int64_t>(bad_.size());
}

std::vector<std::string> EncodedImageDataset::bad_items() const {
  std::vector<int64_t> bad;
  {
    std::lock_guard<std::mutex> lock(bad_mutex_);
    bad.assign(bad_.begin(), bad_.end());
  }
  std::vector<std::string> out;
  for (const int64_t i : bad) out.push_back(item_name(i));
  return out;
}

RawExample EncodedImageDataset::load(int64_t index) const {
  check_index(index);
  const int64_t n = size();
  for (int64_t step = 0; step < n; ++step) {
    const int64_t i = (index + step) % n;
    if (options_.skip_bad) {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (bad_.count(i)) continue;
    }
    try {
      const std::vector<uint8_t> bytes = read_bytes(i);
      return {decode_image(bytes.data(), bytes.size(), options_.channels, item_name(i)), item_label(i)};
    } catch (const Error&) {
      if (!options_.skip_bad) throw;
      std::lock_guard<std::mutex> lock(bad_mutex_);
      bad_.insert(i);
    }
  }
  throw Error(str("none of the ", n, " images of '", description(), "' can be decoded"),
              "check the data source with `seqgan dataset inspect`");
}

}  // namespace seqgan
