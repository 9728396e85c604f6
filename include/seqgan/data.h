// Data sets (IDX / Fashion-MNIST, folders of images, LMDB, tar shards), per-sample transforms and a threaded,
// deterministic, shardable batch loader.
//
// Determinism: the sample order of an epoch depends only on (seed, epoch), the augmentation of
// a sample only on (seed, epoch, sample index), and batch k of an epoch is always the same
// samples in the same order, whatever the number of worker threads or their timing.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "seqgan/image.h"

namespace seqgan {

// ---------------------------------------------------------------------------------------------
// IDX files ((Fashion-)MNIST): big-endian magic 0x0000 <type> <ndims>, ndims uint32 sizes, data.
// Only unsigned bytes (type 0x08) exist in these data sets and only they are accepted.

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // ubyte, 3 dims [N, H, W]
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // ubyte, 1 dim [N]
constexpr size_t kIdxMaxBytes = size_t{1} << 32;   // refuse larger payloads (and gzip bombs)

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, dims multiplied out
};

// Parses an IDX file held in memory; gzip data (1f 8b) is inflated first. Checks the magic, the
// dimensions and that the data length equals the product of the dimensions exactly. `name`
// appears in errors; payloads over `max_bytes` are refused before they are allocated.
IdxArray parse_idx(const uint8_t* data, size_t size, const std::string& name,
                   size_t max_bytes = kIdxMaxBytes);

// Reads and parses an IDX file, raw or gzip-compressed (detected from the content, not the name).
IdxArray read_idx(const std::string& path);

// Writes an IDX ubyte file; a name ending in ".gz" is gzip-compressed. Atomic (temp + rename).
void write_idx(const std::string& path, const IdxArray& array);

// ---------------------------------------------------------------------------------------------
// Data sets.

struct Example {
  at::Tensor image;    // [C, H, W] float32 in [-1, 1]
  int64_t label = -1;  // class id, or -1 for unlabeled data
};

struct RawExample {
  Image image;  // 8-bit HWC with the data set's channels()
  int64_t label = -1;
};

// All methods are safe to call from several threads at once.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The decoded sample before any transform.
  virtual RawExample load(int64_t index) const = 0;
  // load() converted to a tensor, without transforms (see Transform and Loader for those).
  virtual Example get(int64_t index) const;
  // 0 for unlabeled data (every label is -1).
  virtual int num_classes() const = 0;
  virtual std::vector<std::string> class_names() const = 0;
  virtual int channels() const = 0;
  // Where the data comes from, for logs and errors.
  virtual std::string description() const = 0;
  // For data sets stored in shards: the first index of every shard and, last, size() (shard s
  // holds indices [offsets[s], offsets[s + 1])). Empty for everything else. The Loader then
  // gives each rank whole shards (see Loader).
  virtual std::vector<int64_t> shard_offsets() const { return {}; }

  // Writes {"classes": [...]} (index = class id) to <run_dir>/classes.json, atomically.
  void write_class_list(const std::string& run_dir) const;

 protected:
  // Throws an Error naming the data set unless 0 <= index < size().
  void check_index(int64_t index) const;
};

// Images [N, H, W] and labels [N] from a pair of IDX files.
class IdxDataset : public Dataset {
 public:
  // With empty class_names the classes are named "0", "1", ... up to the largest label.
  IdxDataset(const std::string& images_path, const std::string& labels_path,
             std::vector<std::string> class_names = {});

  // Finds <prefix>-images-idx3-ubyte[.gz] and <prefix>-labels-idx1-ubyte[.gz] under root, with
  // prefix "train" for split "train" and "t10k" for split "test" (the names MNIST and Debian's
  // dataset-fashion-mnist use; "train-images.idx3-ubyte" is accepted too).
  static std::pair<std::string, std::string> find_split(const std::string& root, const std::string& split);

  int64_t size() const override { return count_; }
  RawExample load(int64_t index) const override;
  int num_classes() const override { return static_cast<int>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  int channels() const override { return 1; }
  std::string description() const override { return images_path_; }
  int height() const { return height_; }
  int width() const { return width_; }

 private:
  std::string images_path_;
  int64_t count_ = 0;
  int height_ = 0;
  int width_ = 0;
  std::vector<uint8_t> pixels_;  // [N, H, W]
  std::vector<uint8_t> labels_;  // [N]
  std::vector<std::string> classes_;
};

// Debian's dataset-fashion-mnist installs here.
constexpr const char* kFashionMnistRoot = "/usr/share/datasets/fashion-mnist";
const std::vector<std::string>& fashion_mnist_classes();

// Fashion-MNIST: 60000 train / 10000 test grey 28x28 images, 10 classes.
class FashionMnist : public IdxDataset {
 public:
  explicit FashionMnist(const std::string& root = kFashionMnistRoot, const std::string& split = "train");

 private:
  FashionMnist(std::pair<std::string, std::string> files);
};

// Options of the data sets that hold encoded images (folders, LMDB, tar shards).
struct ImageSourceOptions {
  int channels = 3;       // decode to 1 (grey) or 3 (RGB)
  bool skip_bad = false;  // substitute undecodable images instead of throwing (see EncodedImageDataset)
  // image-folder: the class list to label class folders by (the training split's), so that a
  // validation folder with some of the classes keeps their labels; a folder of a class not in it
  // is an error. Empty: the folder's own class folders, sorted.
  std::vector<std::string> classes;
  // image-folder: for a folder that holds its images directly (ImageNet's validation layout), a
  // file naming each image's class (see parse_image_labels); empty: such images are unlabeled.
  std::string labels_file;
};

// The lines of an image-labels file: "IMAGE CLASS" or "IMAGE,CLASS ..." (ImageNet's
// LOC_val_solution.csv, whose header line "ImageId,PredictionString" is skipped and whose
// prediction string starts with the class). IMAGE is a file name with or without its extension.
// Returns {image stem: class}; throws naming the line for a line without a class or a repeated
// image. `source` names the file in errors.
std::map<std::string, std::string> parse_image_labels(const std::string& text, const std::string& source);
using ImageFolderOptions = ImageSourceOptions;

// A data set of encoded images (JPEG, PNG or WebP, recognised by content), decoded by
// decode_image on load. Subclasses say where item i's bytes, name and label come from.
//
// skip_bad: an item that cannot be read or decoded is remembered and replaced by the next
// decodable item in index order (wrapping around). The substitute depends only on which items
// are bad, so the result stays deterministic; bad_count() says how many distinct items were
// replaced so far and bad_items() names them (file path, or container and key).
class EncodedImageDataset : public Dataset {
 public:
  RawExample load(int64_t index) const override;
  int channels() const override { return options_.channels; }

  // The encoded bytes of item `index` as stored (for packing into shards without re-encoding).
  virtual std::vector<uint8_t> read_bytes(int64_t index) const = 0;
  // The item's name in errors and reports: a file path, or "<container>[<key>]".
  virtual std::string item_name(int64_t index) const = 0;
  virtual int64_t item_label(int64_t index) const = 0;

  int64_t bad_count() const;
  std::vector<std::string> bad_items() const;
  const ImageSourceOptions& source_options() const { return options_; }

 protected:
  explicit EncodedImageDataset(ImageSourceOptions options);

 private:
  ImageSourceOptions options_;
  mutable std::mutex bad_mutex_;
  mutable std::set<int64_t> bad_;
};

// Every .png/.jpg/.jpeg/.webp file (any case) below root, found recursively, hidden entries skipped.
//
// Labels: when root has sub-folders holding images, each such top-level sub-folder is a class,
// ids assigned in byte-wise order of the folder names (stable across machines and runs); images
// directly in root are then an error. When root holds only loose images (and no sub-folder with
// images) the data set is unlabeled: num_classes() is 0 and every label is -1, so class-
// conditional training fails loudly instead of learning one fake class.
// Files are ordered by (class, path).
class ImageFolder : public EncodedImageDataset {
 public:
  explicit ImageFolder(const std::string& root, ImageSourceOptions options = {});
  // The class folders of `root` as the constructor would find them (non-hidden sub-folders with
  // an image somewhere below), without listing every image.
  static std::vector<std::string> class_folders(const std::string& root);

 private:
  void label_loose_images(const std::string& labels_file, const std::vector<std::string>& classes);

 public:

  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  int num_classes() const override { return static_cast<int>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::string description() const override { return root_; }
  std::vector<uint8_t> read_bytes(int64_t index) const override;
  std::string item_name(int64_t index) const override { return path(index); }
  int64_t item_label(int64_t index) const override { return label(index); }

  const std::string& path(int64_t index) const;
  int64_t label(int64_t index) const;
  std::vector<std::string> bad_files() const { return bad_items(); }

 private:
  std::string root_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  std::vector<std::string> classes_;
};

// LMDB environments in the layout of LSUN's official export: every key -> one encoded image
// (WebP, JPEG or PNG, recognised by content). Read through liblmdb, read-only and without a lock
// file (safe for any number of reader threads and processes, and on read-only file systems);
// items are in LMDB key order (byte-wise). Unlabeled (num_classes() 0) unless class_name is
// given, in which case every image has label 0 of that one class.
class LmdbDataset : public EncodedImageDataset {
 public:
  // path: an environment folder holding data.mdb, or the data.mdb file itself.
  explicit LmdbDataset(const std::string& path, ImageSourceOptions options = {},
                       std::string class_name = {});
  ~LmdbDataset() override;

  int64_t size() const override;
  int num_classes() const override { return class_name_.empty() ? 0 : 1; }
  std::vector<std::string> class_names() const override;
  std::string description() const override { return path_; }
  std::vector<uint8_t> read_bytes(int64_t index) const override;
  std::string item_name(int64_t index) const override;  // "<path>[<key>]"
  int64_t item_label(int64_t index) const override { return class_name_.empty() ? -1 : 0; }

  // The key of item `index` (LSUN's keys are printable; other bytes are kept as they are).
  std::string key(int64_t index) const;

 private:
  struct Impl;
  std::string path_;
  std::string class_name_;
  std::unique_ptr<Impl> impl_;
};

// Tar shards in the webdataset layout: members KEY.jpg / KEY.jpeg / KEY.png / KEY.webp holding an
// encoded image, each optionally with KEY.cls (a decimal class id as text). Other members (such as
// KEY.json or KEY.txt) are ignored. root is a folder of *.tar files (taken in byte-wise name
// order) or one .tar file. Shards are indexed once when opened (one pass over the tar headers,
// skipping the data), and images are read with pread from their offsets, so any item can be read
// at any time by any thread. Class names come from classes.json beside the shards ({"classes":
// [...]}, as pack-shards writes it) or else are "0", "1", ... up to the largest id; without any
// .cls member the data set is unlabeled. Either every image has a .cls member or none does.
class ShardDataset : public EncodedImageDataset {
 public:
  explicit ShardDataset(const std::string& root, ImageSourceOptions options = {});

  int64_t size() const override;
  int num_classes() const override { return static_cast<int>(classes_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  std::string description() const override { return root_; }
  std::vector<int64_t> shard_offsets() const override { return offsets_; }
  std::vector<uint8_t> read_bytes(int64_t index) const override;
  std::string item_name(int64_t index) const override;  // "<shard>[<member>]"
  int64_t item_label(int64_t index) const override;

  const std::vector<std::string>& shards() const { return shards_; }

 private:
  struct Item {
    int32_t shard = 0;
    uint64_t offset = 0;  // of the member's data in the shard file
    uint64_t size = 0;
    int64_t label = -1;
    std::string member;   // the image member's name, e.g. "000123.jpg"
  };
  std::string root_;
  std::vector<std::string> shards_;
  std::vector<int64_t> offsets_;
  std::vector<Item> items_;
  std::vector<std::string> classes_;
};

struct PackShardsOptions {
  int64_t per_shard = 10000;  // images per shard
  uint64_t seed = 0;          // the images are written in a random order of this seed (class-mixed shards)
  bool shuffle = true;
  std::string prefix = "shard";  // OUT/<prefix>-000000.tar, ...
};

// Writes every image of `dataset` into tar shards in the webdataset layout (KEY.<ext> with the
// stored bytes of an EncodedImageDataset, else a PNG; KEY.cls for labeled data; KEY = the image's
// position in data-set order, zero-padded), plus classes.json when the data set has classes.
// Each shard is written to a temporary name and renamed when complete. Returns the shard paths.
std::vector<std::string> pack_shards(const Dataset& dataset, const std::string& out_dir,
                                     const PackShardsOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Transforms, applied to the 8-bit image in this order: channel conversion, constant padding,
// resize of the short side, crop, horizontal flip. With Preprocess::kResize the geometry and the
// pixels are those of torchvision's Resize(resolution, filter) followed by CenterCrop(resolution)
// or RandomCrop(resolution) and RandomHorizontalFlip on a PIL image (the random draws come from
// seqgan's own generator, so which crop an image gets differs from torch's).

// Uniform integer in [0, n) from one 64-bit draw (Lemire's multiply-shift), and the Fisher-Yates
// shuffle of v[0, n) built on it. std::uniform_int_distribution is avoided on purpose: its
// algorithm differs between standard libraries, and data orders and augmentations must be the
// same on every machine.
int64_t uniform_below(std::mt19937_64& rng, int64_t n);
void shuffle_indices(int64_t* v, int64_t n, std::mt19937_64& rng);

// How an image reaches the model's resolution.
enum class Preprocess {
  kResize,  // torchvision's Resize(resolution) with `filter`, then the crop (RandomCrop / CenterCrop)
  kAdm,     // guided-diffusion's ADM / LlamaGen center_crop_arr (adm_center_crop); random_crop ignored
};

struct TransformOptions {
  int resolution = 0;        // short side after resizing, and the crop size; 0 keeps the size
  ResizeFilter filter = ResizeFilter::kBilinear;  // torchvision's Resize default
  Preprocess preprocess = Preprocess::kResize;
  int channels = 0;          // 1 or 3 to convert (luma / replication); 0 keeps the source's
  int pad = 0;               // black border added on every side first (Fashion-MNIST 28 -> 32: 2)
  bool random_crop = false;  // random resolution^2 crop; takes precedence over center_crop
  bool hflip = false;        // mirror with probability 1/2
  bool center_crop = true;   // central resolution^2 crop (evaluation)
};

class Transform {
 public:
  explicit Transform(TransformOptions options = {});

  // The randomness comes only from rng (crop offsets first, then the flip decision).
  Image apply(const Image& image, std::mt19937_64& rng) const;
  // The same with the per-sample generator of (seed, epoch, index).
  Image apply(const Image& image, uint64_t seed, int64_t epoch, int64_t index) const;
  // Seed of the per-sample generator: a hash of (seed, epoch, index).
  static uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

  const TransformOptions& options() const { return options_; }

 private:
  TransformOptions options_;
};

// ---------------------------------------------------------------------------------------------
// Loader.

struct LoaderOptions {
  int64_t batch_size = 32;
  int num_workers = 2;    // threads decoding batches; 0 decodes in next() on the caller's thread
  int prefetch = 2;       // batches per worker prepared ahead of the consumer
  bool shuffle = true;
  bool drop_last = true;  // drop the incomplete last batch (and the samples that don't fill all ranks)
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
};

struct Batch {
  at::Tensor images;             // [B, C, H, W] float32 in [-1, 1]
  at::Tensor labels;             // [B] int64
  std::vector<int64_t> indices;  // data set indices of the samples
  int64_t epoch = 0;
  int64_t batch = 0;             // position within the epoch
};

// Sharded data sets (Dataset::shard_offsets() non-empty) instead keep reads within whole shards:
// rank r always owns shards r, r + W, r + 2W, ... (at least W shards are needed); each epoch
// shuffles the order of the rank's shards and the order of the samples within each shard, and
// every rank takes the same number of samples (the smallest rank's count; without drop_last the
// rank's order is wrapped to the largest count instead).
// Epoch order: a Fisher-Yates shuffle of 0..N-1 driven by std::mt19937_64 seeded from
// (seed, epoch) (identity without shuffle). Sharding: rank r takes positions r, r + W, r + 2W, ...
// of that order, W = world_size; with drop_last the order is first cut to a multiple of W (the
// shards are disjoint), without it the order is wrapped around to a multiple of W (every sample
// is covered, a few twice), as torch's DistributedSampler does. All ranks get the same number of
// batches. Worker threads build batches ahead into a bounded window; next() hands them out in
// order and rethrows a worker's exception. The destructor stops and joins the workers even when
// the epoch was not consumed.
class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options, TransformOptions transform = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts an epoch, dropping whatever was prepared for the previous one. skip_batches resumes
  // mid-epoch: the next batch returned is batch number skip_batches of that epoch.
  void start_epoch(int64_t epoch, int64_t skip_batches = 0);
  void set_epoch(int64_t epoch) { start_epoch(epoch, 0); }

  // Fills `batch` with the next batch of the epoch and returns true, or returns false at the end
  // of the epoch. Starts epoch 0 when no epoch was started. After a worker's exception was
  // rethrown, every call rethrows it until the next start_epoch.
  bool next(Batch& batch);

  int64_t batches_per_epoch() const;
  int64_t samples_per_rank() const;
  int64_t epoch() const;
  // Batches of the current epoch handed out so far (skipped ones included): save this with a
  // checkpoint and pass it to start_epoch to resume exactly.
  int64_t position() const;
  // This rank's sample order for an epoch.
  std::vector<int64_t> epoch_indices(int64_t epoch) const;
  const LoaderOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqgan
