// LMDB environments of encoded images (LSUN's export), read through liblmdb.
//
// The environment is opened read-only without a lock file (MDB_NOLOCK): nothing writes to it while
// seqgan reads, so no reader table is needed, and read-only file systems work. MDB_NOTLS makes a
// read transaction independent of the thread that began it, so every read_bytes() call, on any
// thread, begins and aborts its own short read-only transaction. MDB_NORDAHEAD: images are read
// in random order, read-ahead would only evict pages.
#include <lmdb.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <sys/stat.h>

#include "seqgan/data.h"
#include "seqgan/error.h"

namespace seqgan {
namespace fs = std::filesystem;

namespace {

constexpr const char* kLmdbHint =
    "data.dataset=lmdb expects an LMDB environment (a folder holding data.mdb), as LSUN's export; "
    "for a folder of images use image-folder";

std::string quote_mdb(int rc) { return str("\"", mdb_strerror(rc), "\""); }

}  // namespace

struct LmdbDataset::Impl {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  std::string keys;               // every key, concatenated in key order
  std::vector<uint64_t> key_end;  // key i is keys[key_end[i - 1], key_end[i]) (key_end[-1] = 0)

  ~Impl() {
    if (env != nullptr) mdb_env_close(env);
  }

  int64_t size() const { return static_cast<int64_t>(key_end.size()); }
  uint64_t key_begin(int64_t i) const { return i == 0 ? 0 : key_end[static_cast<size_t>(i - 1)]; }
  // mdb_get takes a non-const MDB_val but only reads the key.
  MDB_val key_val(int64_t i) const {
    const uint64_t b = key_begin(i);
    return {static_cast<size_t>(key_end[static_cast<size_t>(i)] - b), const_cast<char*>(keys.data()) + b};
  }
};

namespace {

// A read-only transaction aborted on scope exit.
struct ReadTxn {
  MDB_txn* txn = nullptr;
  ~ReadTxn() {
    if (txn != nullptr) mdb_txn_abort(txn);
  }
};

struct Cursor {
  MDB_cursor* cursor = nullptr;
  ~Cursor() {
    if (cursor != nullptr) mdb_cursor_close(cursor);
  }
};

}  // namespace

LmdbDataset::LmdbDataset(const std::string& path, ImageSourceOptions options, std::string class_name)
    : EncodedImageDataset(options), path_(path), class_name_(std::move(class_name)), impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  SEQGAN_CHECK_HINT(!ec && fs::exists(status), "check data.root (" + std::string(kLmdbHint) + ")",
                    "the LMDB environment '", path, "' does not exist");
  const bool is_dir = fs::is_directory(status);
  const std::string data_file = is_dir ? (fs::path(path) / "data.mdb").string() : path;
  if (is_dir) {
    SEQGAN_CHECK_HINT(fs::is_regular_file(data_file, ec), kLmdbHint, "'", path,
                      "' is not an LMDB environment: it has no data.mdb");
  } else {
    SEQGAN_CHECK_HINT(fs::is_regular_file(status), kLmdbHint, "'", path, "' is neither a folder nor a file");
  }
  struct stat st {};
  SEQGAN_CHECK(::stat(data_file.c_str(), &st) == 0, "cannot stat '", data_file, "': ", std::strerror(errno));
  const auto file_size = static_cast<uint64_t>(st.st_size);
  SEQGAN_CHECK_HINT(file_size > 0, kLmdbHint, "'", data_file, "' is empty: not an LMDB environment");

  Impl& m = *impl_;
  int rc = mdb_env_create(&m.env);
  SEQGAN_CHECK(rc == 0, "mdb_env_create failed for '", path, "': ", quote_mdb(rc));
  // Room for any number of reader threads. Without a lock file liblmdb keeps no reader table and
  // does not count readers; the limit matters only if the environment is ever opened with one.
  mdb_env_set_maxreaders(m.env, 4096);
  // Two named databases are enough to tell a sub-database from an image (see below).
  mdb_env_set_maxdbs(m.env, 2);
  // The map only needs to cover the file: the size stored in the environment (often terabytes,
  // the writer's reservation) can exceed what a process may map. liblmdb raises it to the data
  // the environment says it holds, which is checked against the file below.
  mdb_env_set_mapsize(m.env, static_cast<size_t>(file_size));
  const unsigned flags = MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS | MDB_NORDAHEAD | (is_dir ? 0u : MDB_NOSUBDIR);
  rc = mdb_env_open(m.env, path.c_str(), flags, 0);
  SEQGAN_CHECK_HINT(rc == 0, rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH
                                 ? std::string(kLmdbHint)
                                 : "check that '" + data_file + "' is readable",
                    "cannot open the LMDB environment '", path, "': ", quote_mdb(rc));

  // A data file shorter than the pages its header says are in use would crash the process
  // (SIGBUS) on the first read of a missing page; refuse it instead.
  MDB_envinfo info{};
  MDB_stat env_stat{};
  mdb_env_info(m.env, &info);
  mdb_env_stat(m.env, &env_stat);
  const uint64_t needed = (static_cast<uint64_t>(info.me_last_pgno) + 1) * env_stat.ms_psize;
  SEQGAN_CHECK_HINT(needed <= file_size, "copy the environment again (e.g. with mdb_copy) from its source",
                    "'", data_file, "' is truncated: its header says ", needed, " bytes are in use, the file has ",
                    file_size);

  ReadTxn txn;
  rc = mdb_txn_begin(m.env, nullptr, MDB_RDONLY, &txn.txn);
  SEQGAN_CHECK(rc == 0, "cannot begin a read transaction on '", path, "': ", quote_mdb(rc));
  rc = mdb_dbi_open(txn.txn, nullptr, 0, &m.dbi);
  SEQGAN_CHECK(rc == 0, "cannot open the main database of '", path, "': ", quote_mdb(rc));
  unsigned db_flags = 0;
  rc = mdb_dbi_flags(txn.txn, m.dbi, &db_flags);
  SEQGAN_CHECK(rc == 0, "cannot read the flags of the main database of '", path, "': ", quote_mdb(rc));
  SEQGAN_CHECK_HINT(!(db_flags & MDB_DUPSORT), kLmdbHint, "'", path,
                    "' has another layout: its main database holds several values per key (MDB_DUPSORT), "
                    "expected one encoded image per key");
  MDB_stat db_stat{};
  rc = mdb_stat(txn.txn, m.dbi, &db_stat);
  SEQGAN_CHECK(rc == 0, "cannot read the statistics of '", path, "': ", quote_mdb(rc));
  SEQGAN_CHECK_HINT(db_stat.ms_entries > 0, kLmdbHint, "'", path,
                    "' has another layout: its main database is empty, expected one encoded image per key");

  // All keys in key order, into one buffer (LSUN bedroom: 3 million 40-byte keys, 120 MB).
  m.key_end.reserve(db_stat.ms_entries);
  Cursor cursor;
  rc = mdb_cursor_open(txn.txn, m.dbi, &cursor.cursor);
  SEQGAN_CHECK(rc == 0, "cannot open a cursor on '", path, "': ", quote_mdb(rc));
  MDB_val key{}, value{};
  for (rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_NEXT)) {
    // The names of named sub-databases are keys of the main database, with the 48-byte record
    // of the sub-database as the value. An image cannot be that small, so only values of that
    // size are checked, by opening the key as a database name.
    if (value.mv_size == 48) {
      const std::string name(static_cast<const char*>(key.mv_data), key.mv_size);
      MDB_dbi sub = 0;
      if (name.find('\0') == std::string::npos && mdb_dbi_open(txn.txn, name.c_str(), 0, &sub) == 0) {
        throw Error(str("'", path, "' has another layout: its main database names a sub-database '",
                        printable(name.data(), name.size()), "', expected one encoded image per key"),
                    kLmdbHint);
      }
    }
    m.keys.append(static_cast<const char*>(key.mv_data), key.mv_size);
    m.key_end.push_back(m.keys.size());
  }
  SEQGAN_CHECK(rc == MDB_NOTFOUND, "cannot read the keys of '", path, "' (after ", m.key_end.size(), " of ",
               db_stat.ms_entries, "): ", quote_mdb(rc));
  // The main database handle stays valid for later transactions once this one commits.
  rc = mdb_txn_commit(txn.txn);
  txn.txn = nullptr;
  SEQGAN_CHECK(rc == 0, "cannot end the read transaction on '", path, "': ", quote_mdb(rc));
  m.keys.shrink_to_fit();
}

LmdbDataset::~LmdbDataset() = default;

int64_t LmdbDataset::size() const { return impl_->size(); }

std::vector<std::string> LmdbDataset::class_names() const {
  if (class_name_.empty()) return {};
  return {class_name_};
}

std::string LmdbDataset::key(int64_t index) const {
  check_index(index);
  const MDB_val k = impl_->key_val(index);
  return std::string(static_cast<const char*>(k.mv_data), k.mv_size);
}

std::string LmdbDataset::item_name(int64_t index) const {
  check_index(index);
  const MDB_val k = impl_->key_val(index);
  return str(path_, "[", printable(static_cast<const char*>(k.mv_data), k.mv_size), "]");
}

std::vector<uint8_t> LmdbDataset::read_bytes(int64_t index) const {
  check_index(index);
  ReadTxn txn;
  int rc = mdb_txn_begin(impl_->env, nullptr, MDB_RDONLY, &txn.txn);
  SEQGAN_CHECK(rc == 0, "cannot begin a read transaction on '", path_, "' for ", item_name(index), ": ",
               quote_mdb(rc));
  MDB_val k = impl_->key_val(index);
  MDB_val value{};
  rc = mdb_get(txn.txn, impl_->dbi, &k, &value);
  SEQGAN_CHECK_HINT(rc == 0, "the environment changed after it was opened; reopen the data set",
                    "cannot read ", item_name(index), ": ", quote_mdb(rc));
  const auto* p = static_cast<const uint8_t*>(value.mv_data);
  return std::vector<uint8_t>(p, p + value.mv_size);
}

}  // namespace seqgan
