// The batch loader: deterministic epoch order, sharding by rank (by sample, or by whole shards for
// data sets stored in shards), worker threads that prepare a bounded window of batches ahead of
// the consumer.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <thread>

#include "seqgan/data.h"
#include "seqgan/error.h"

namespace seqgan {
namespace {

// One epoch of one rank: the data set indices in order, cut into batches.
struct Plan {
  int64_t epoch = 0;
  std::vector<int64_t> indices;
  int64_t num_batches = 0;
};

struct Slot {
  Batch batch;
  std::exception_ptr error;
};

}  // namespace

struct Loader::Impl {
  std::shared_ptr<const Dataset> data;
  LoaderOptions opt;
  Transform transform;
  int64_t per_rank = 0;
  int64_t num_batches = 0;

  std::mutex mutex;
  std::condition_variable work_cv;   // workers wait for claimable batches
  std::condition_variable ready_cv;  // the consumer waits for its batch
  std::shared_ptr<const Plan> plan;  // null until the first epoch starts
  // Bumped by start_epoch; stale results are dropped. Atomic (like stop) so that a worker can
  // abandon a stale batch between samples instead of decoding all of it first.
  std::atomic<uint64_t> generation{0};
  int64_t next_claim = 0;            // next batch a worker may build
  int64_t next_consume = 0;          // next batch next() returns
  std::map<int64_t, Slot> ready;
  std::exception_ptr failed;
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;

  int64_t window() const { return static_cast<int64_t>(opt.prefetch) * std::max(1, opt.num_workers); }

  // Sharded data sets (Dataset::shard_offsets()): the shard boundaries, and this rank's shards
  // (rank, rank + W, rank + 2W, ...) with the number of samples they hold.
  std::vector<int64_t> shard_offsets;
  std::vector<int64_t> my_shards;
  int64_t my_samples = 0;

  // The sharded order of an epoch. The order of all shards is shuffled by the generator of
  // sample_seed(seed, epoch, -1), and the rank visits its own shards in that order; the samples
  // of shard s are shuffled by the generator of sample_seed(seed, epoch, -2 - s) (indices below
  // -1 are never sample indices). Every rank thus computes its order alone, from its own shards,
  // and the order depends on (seed, epoch) only. The rank's samples are then cut to per_rank
  // (drop_last) or repeated from the start up to it.
  std::vector<int64_t> sharded_order(int64_t epoch) const {
    std::vector<int64_t> shards = my_shards;
    if (opt.shuffle) {
      std::vector<int64_t> all(shard_offsets.size() - 1);
      for (size_t s = 0; s < all.size(); ++s) all[s] = static_cast<int64_t>(s);
      std::mt19937_64 rng(Transform::sample_seed(opt.seed, epoch, -1));
      shuffle_indices(all.data(), static_cast<int64_t>(all.size()), rng);
      shards.clear();
      for (const int64_t s : all) {
        if (s % opt.world_size == opt.rank) shards.push_back(s);
      }
    }
    std::vector<int64_t> mine;
    mine.reserve(static_cast<size_t>(std::max(my_samples, per_rank)));
    for (const int64_t s : shards) {
      const size_t begin = mine.size();
      for (int64_t i = shard_offsets[static_cast<size_t>(s)]; i < shard_offsets[static_cast<size_t>(s) + 1]; ++i) {
        mine.push_back(i);
      }
      if (opt.shuffle) {
        std::mt19937_64 rng(Transform::sample_seed(opt.seed, epoch, -2 - s));
        shuffle_indices(mine.data() + begin, static_cast<int64_t>(mine.size() - begin), rng);
      }
    }
    for (int64_t k = my_samples; k < per_rank; ++k) mine.push_back(mine[static_cast<size_t>(k % my_samples)]);
    mine.resize(static_cast<size_t>(per_rank));
    return mine;
  }

  std::vector<int64_t> order(int64_t epoch) const {
    if (!shard_offsets.empty()) return sharded_order(epoch);
    const int64_t n = data->size();
    std::vector<int64_t> perm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
    if (opt.shuffle) {
      std::mt19937_64 rng(Transform::sample_seed(opt.seed, epoch, -1));
      shuffle_indices(perm.data(), n, rng);
    }
    std::vector<int64_t> mine;
    mine.reserve(static_cast<size_t>(per_rank));
    for (int64_t k = 0; k < per_rank; ++k) {
      const int64_t pos = opt.rank + k * opt.world_size;  // strided shard
      mine.push_back(perm[static_cast<size_t>(pos % n)]);   // wraps only without drop_last
    }
    return mine;
  }

  // Builds batch k of the plan. Returns false when the loader stopped or moved to another epoch
  // (generation != gen) before the batch was complete.
  bool make_batch(const Plan& plan, int64_t k, uint64_t gen, Batch& b) const {
    const int64_t begin = k * opt.batch_size;
    const int64_t end = std::min<int64_t>(begin + opt.batch_size, static_cast<int64_t>(plan.indices.size()));
    b = Batch{};
    b.epoch = plan.epoch;
    b.batch = k;
    b.indices.assign(plan.indices.begin() + begin, plan.indices.begin() + end);
    b.labels = at::empty({end - begin}, at::kLong);
    int64_t* labels = b.labels.data_ptr<int64_t>();
    float* out = nullptr;
    int64_t c = 0, h = 0, w = 0;
    for (int64_t i = 0; i < end - begin; ++i) {
      if (stop || generation != gen) return false;
      const int64_t index = b.indices[static_cast<size_t>(i)];
      RawExample raw = data->load(index);
      const Image img = transform.apply(raw.image, opt.seed, plan.epoch, index);
      if (i == 0) {
        c = img.channels, h = img.height, w = img.width;
        b.images = at::empty({end - begin, c, h, w}, at::kFloat);  // [B, C, H, W]
        out = b.images.data_ptr<float>();
      }
      SEQGAN_CHECK_HINT(img.channels == c && img.height == h && img.width == w,
                        "set a transform resolution (and channels) so that all samples match",
                        "sample ", index, " of '", data->description(), "' is ", img.width, "x", img.height, "x",
                        img.channels, " after transforms, but sample ", b.indices[0], " in the same batch is ",
                        w, "x", h, "x", c);
      float* o = out + i * c * h * w;
      const uint8_t* p = img.pixels.data();
      for (int64_t ch = 0; ch < c; ++ch) {  // HWC bytes -> CHW floats in [-1, 1]
        for (int64_t j = 0; j < h * w; ++j) o[ch * h * w + j] = p[j * c + ch] / 127.5f - 1.0f;
      }
      labels[i] = raw.label;
    }
    return true;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex);
    while (true) {
      work_cv.wait(lock, [&] {
        return stop || (plan && next_claim < plan->num_batches && next_claim < next_consume + window());
      });
      if (stop) return;
      const std::shared_ptr<const Plan> p = plan;
      const int64_t k = next_claim++;
      const uint64_t gen = generation;
      lock.unlock();
      Slot slot;
      bool complete = true;
      try {
        complete = make_batch(*p, k, gen, slot.batch);
      } catch (...) {
        slot.error = std::current_exception();
      }
      lock.lock();
      if (complete && gen == generation) {
        ready.emplace(k, std::move(slot));
        ready_cv.notify_all();
      }
    }
  }
};

Loader::Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options, TransformOptions transform)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  SEQGAN_CHECK(dataset != nullptr, "expected a data set, got null");
  SEQGAN_CHECK(options.batch_size >= 1 && options.num_workers >= 0 && options.prefetch >= 1,
               "expected batch_size >= 1, num_workers >= 0, prefetch >= 1, got ", options.batch_size, ", ",
               options.num_workers, ", ", options.prefetch);
  SEQGAN_CHECK(options.world_size >= 1 && options.rank >= 0 && options.rank < options.world_size,
               "expected 0 <= rank < world_size, got rank ", options.rank, ", world_size ", options.world_size);
  m.data = std::move(dataset);
  m.opt = options;
  m.transform = Transform(transform);
  const int64_t n = m.data->size(), ws = options.world_size, bs = options.batch_size;
  SEQGAN_CHECK(n > 0, "data set '", m.data->description(), "' is empty");
  m.shard_offsets = m.data->shard_offsets();
  if (m.shard_offsets.empty()) {
    m.per_rank = options.drop_last ? n / ws : (n + ws - 1) / ws;
  } else {
    // Whole shards per rank: rank r owns shards r, r + W, ...; all ranks take the same number of
    // samples, the smallest rank's total (drop_last) or the largest one's (wrapping around).
    const std::vector<int64_t>& off = m.shard_offsets;
    const int64_t shards = static_cast<int64_t>(off.size()) - 1;
    bool valid = shards >= 1 && off.front() == 0 && off.back() == n;
    for (size_t s = 0; valid && s + 1 < off.size(); ++s) valid = off[s] < off[s + 1];
    SEQGAN_CHECK(valid, "data set '", m.data->description(), "' reports shard offsets that do not split [0, ", n,
                 ") into non-empty shards");
    SEQGAN_CHECK_HINT(shards >= ws,
                      "pack the data into at least as many shards as ranks (seqgan pack-shards --per-shard), or "
                      "train on fewer ranks",
                      "data set '", m.data->description(), "' has ", shards, " shard(s), fewer than the ", ws,
                      " ranks: each rank reads whole shards");
    int64_t smallest = n, largest = 0;
    for (int64_t r = 0; r < ws; ++r) {
      int64_t total = 0;
      for (int64_t s = r; s < shards; s += ws) total += off[static_cast<size_t>(s) + 1] - off[static_cast<size_t>(s)];
      smallest = std::min(smallest, total);
      largest = std::max(largest, total);
      if (r == options.rank) m.my_samples = total;
    }
    for (int64_t s = options.rank; s < shards; s += ws) m.my_shards.push_back(s);
    m.per_rank = options.drop_last ? smallest : largest;
  }
  m.num_batches = options.drop_last ? m.per_rank / bs : (m.per_rank + bs - 1) / bs;
  SEQGAN_CHECK_HINT(m.num_batches > 0, "lower batch_size, or set drop_last = false",
                    "expected at least one batch per epoch: ", n, " samples over ", ws, " ranks give ",
                    m.per_rank, " per rank", m.shard_offsets.empty() ? "" : " (whole shards per rank)",
                    ", fewer than batch_size ", bs);
  for (int i = 0; i < options.num_workers; ++i) m.workers.emplace_back([&m] { m.work(); });
}

Loader::~Loader() {
  {
    // Under the lock, so that no worker can miss the notification between its check and its wait.
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop = true;
  }
  impl_->work_cv.notify_all();
  for (std::thread& t : impl_->workers) t.join();
}

void Loader::start_epoch(int64_t epoch, int64_t skip_batches) {
  Impl& m = *impl_;
  SEQGAN_CHECK_HINT(epoch >= 0, "epochs count from 0", "expected epoch >= 0, got ", epoch);
  SEQGAN_CHECK_HINT(skip_batches >= 0 && skip_batches <= m.num_batches,
                    "the saved position must come from a loader with the same data set and options",
                    "expected 0 <= skip_batches <= ", m.num_batches, " (batches per epoch), got ", skip_batches);
  auto plan = std::make_shared<Plan>();
  plan->epoch = epoch;
  plan->indices = m.order(epoch);
  plan->num_batches = m.num_batches;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    ++m.generation;
    m.plan = std::move(plan);
    m.next_claim = m.next_consume = skip_batches;
    m.ready.clear();
    m.failed = nullptr;
  }
  m.work_cv.notify_all();
}

bool Loader::next(Batch& batch) {
  Impl& m = *impl_;
  bool started;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    started = m.plan != nullptr;
  }
  if (!started) start_epoch(0, 0);
  std::unique_lock<std::mutex> lock(m.mutex);
  if (m.failed) std::rethrow_exception(m.failed);
  if (m.next_consume >= m.plan->num_batches) return false;
  if (m.workers.empty()) {
    const std::shared_ptr<const Plan> p = m.plan;
    const int64_t k = m.next_consume;
    const uint64_t gen = m.generation;
    lock.unlock();
    try {
      m.make_batch(*p, k, gen, batch);  // nothing else changes the generation on this path
    } catch (...) {
      lock.lock();
      m.failed = std::current_exception();
      throw;
    }
    lock.lock();
    ++m.next_consume;
    return true;
  }
  const int64_t k = m.next_consume;
  m.ready_cv.wait(lock, [&] { return m.ready.count(k) > 0; });
  Slot slot = std::move(m.ready.at(k));
  m.ready.erase(k);
  if (slot.error) {
    m.failed = slot.error;
    std::rethrow_exception(slot.error);
  }
  ++m.next_consume;
  lock.unlock();
  m.work_cv.notify_all();  // the window moved on
  batch = std::move(slot.batch);
  return true;
}

int64_t Loader::batches_per_epoch() const { return impl_->num_batches; }
int64_t Loader::samples_per_rank() const { return impl_->per_rank; }

int64_t Loader::epoch() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->plan ? impl_->plan->epoch : 0;
}

int64_t Loader::position() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->next_consume;
}

std::vector<int64_t> Loader::epoch_indices(int64_t epoch) const { return impl_->order(epoch); }

const LoaderOptions& Loader::options() const { return impl_->opt; }

}  // namespace seqgan
