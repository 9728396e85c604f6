// Opening the data set a configuration names, and its training and evaluation transforms.
#include "data/open.h"

#include <filesystem>

#include "seqgan/error.h"

namespace seqgan {

std::shared_ptr<Dataset> open_dataset(const DataConfig& data, const std::string& split) {
  SEQGAN_CHECK(split == "train" || split == "test", "split must be train or test, got '", split, "'");
  if (data.dataset == "fashion-mnist") return std::make_shared<FashionMnist>(data.root, split);
  if (data.dataset == "idx") {
    const auto files = IdxDataset::find_split(data.root, split);
    return std::make_shared<IdxDataset>(files.first, files.second);
  }
  const std::string root = split == "train" ? data.root : data.val_root;
  SEQGAN_CHECK_HINT(!root.empty(), str("set data.val_root to held-out data of the same kind (", data.dataset, ")"),
                    "the test split of data.dataset = ", data.dataset, " needs data.val_root");
  ImageSourceOptions options;
  options.channels = data.channels;
  options.skip_bad = data.skip_bad_files;
  if (data.dataset == "image-folder") {
    // Held-out images are labelled by the training data's classes, which they must be among.
    if (split == "test" && !data.root.empty() && std::filesystem::is_directory(data.root))
      options.classes = ImageFolder::class_folders(data.root);
    if (split == "test") options.labels_file = data.val_labels;
    return std::make_shared<ImageFolder>(root, options);
  }
  if (data.dataset == "lmdb") return std::make_shared<LmdbDataset>(root, options, data.class_name);
  if (data.dataset == "shards") return std::make_shared<ShardDataset>(root, options);
  throw Error(str("unknown data.dataset '", data.dataset, "'"),
              "use fashion-mnist, idx, image-folder, lmdb or shards");
}

void make_data_paths_absolute(DataConfig& data) {
  for (std::string* p : {&data.root, &data.val_root, &data.val_labels}) {
    if (p->empty()) continue;
    std::error_code ec;
    const auto abs = std::filesystem::absolute(*p, ec);
    if (!ec) *p = abs.lexically_normal().string();
  }
}

TransformOptions train_transform(const DataConfig& data) {
  TransformOptions t;
  t.resolution = data.resolution;
  t.filter = parse_resize_filter(data.resize_filter);
  t.preprocess = data.preprocess == "adm" ? Preprocess::kAdm : Preprocess::kResize;
  t.channels = data.channels;
  t.pad = data.pad;
  t.random_crop = data.random_crop;
  t.hflip = data.hflip;
  t.center_crop = true;
  return t;
}

TransformOptions eval_transform(const DataConfig& data) {
  TransformOptions t = train_transform(data);
  t.random_crop = false;
  t.hflip = false;
  return t;
}

}  // namespace seqgan
