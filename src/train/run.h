// What every training command shares: the run directory and the writer that alone touches disk
// (rank 0 in data-parallel runs).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "data/open.h"
#include "seqgan/config.h"
#include "seqgan/data.h"
#include "seqgan/log.h"
#include "seqgan/train.h"  // StopFlag

namespace seqgan {

// An exclusive lock held for the object's lifetime: flock(2) on `lock_path`, which records the
// holder (process id and command line). It never waits: when another process holds it, the
// constructor throws an Error naming that process and `what` it guards. The kernel releases the
// lock when the holder dies, however it dies. With `remove` the lock file is deleted on release
// (for locks beside an output rather than inside a directory); a process that acquired the lock
// of a file that was then deleted tries again on the new one.
class PathLock {
 public:
  PathLock(std::string lock_path, const std::string& what, bool remove = false);
  ~PathLock();
  PathLock(const PathLock&) = delete;
  PathLock& operator=(const PathLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
  bool remove_;
};

// Removes files named NAME.tmp.PID[.N] in `dir` (not recursively) that this process did not
// create: temporary files of writes that a killed process never finished. Call it only while
// holding the lock of the directory. Returns the number of bytes removed.
// With `prefix`, only names starting with it are considered.
int64_t remove_stale_temporaries(const std::string& dir, const std::string& prefix = {});

// A folder of outputs (sample images, a report) written whole or not at all: the files go into
// a temporary folder beside `path` (PATH.tmp.PID), and commit() swaps it into place atomically
// (renameat2 RENAME_EXCHANGE where the file system has it), then deletes the previous output. If
// the object dies uncommitted (an error, an interruption) the temporary folder is deleted and the
// previous output is left whole. A lock beside the folder (PATH.lock, removed on release) refuses
// a second writer of the same output; leftovers of killed writers are removed at start.
class OutputFolder {
 public:
  explicit OutputFolder(std::string path);
  ~OutputFolder();
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;
  // Where to write now (the temporary folder, created).
  const std::string& path() const { return temp_; }
  std::string file(const std::string& name) const { return temp_ + "/" + name; }
  void commit();

 private:
  std::string final_;
  std::string temp_;
  std::unique_ptr<PathLock> lock_;
  bool committed_ = false;
};

// The lock of a single output file (PATH.lock beside it, removed on release), for commands that
// write one file (tokenize): refuses a second writer of the same file and removes temporary
// files of killed writers of it.
std::unique_ptr<PathLock> lock_output_file(const std::string& path);

// How a run starts in its directory.
enum class RunStart {
  kFresh,      // the directory must not hold a run
  kResume,     // continue the run the directory holds
  kOverwrite,  // delete the run the directory holds, then start afresh
};

// A run directory. The writer (rank 0 in data-parallel runs; the others write nothing) locks it
// for the run's lifetime, refuses to start a fresh run over one it holds unless told to
// overwrite, and removes temporary files of killed runs. begin() writes config.json and opens
// metrics.jsonl; on resume the metrics are cut back to the checkpoint's step, so that rows the
// interrupted run logged after its last checkpoint are not there twice.
class RunDir {
 public:
  RunDir(std::string path, bool writer, RunStart start);
  // The start mode of --resume / --overwrite (neither: a fresh run).
  static RunStart start_mode(bool resume, bool overwrite) {
    return resume ? RunStart::kResume : overwrite ? RunStart::kOverwrite : RunStart::kFresh;
  }
  void begin(const Config& config, int64_t resume_step);
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  bool writer() const { return writer_; }
  MetricsWriter& metrics() { return *metrics_; }

 private:
  std::string path_;
  bool writer_;
  RunStart start_;
  std::unique_ptr<PathLock> lock_;
  std::unique_ptr<MetricsWriter> metrics_;
};

// Keeps the rows of a metrics.jsonl file whose step is at most `step` (and only whole lines);
// rewrites the file atomically when anything is dropped. Returns the number of rows dropped.
int64_t truncate_metrics(const std::string& path, int64_t step);

// Throws when any floating-point tensor of a training state holds NaN or infinity, naming them:
// such a state must never replace the last good checkpoint at `checkpoint_path`. `lr_key` names
// the learning-rate setting in the hint ("train_tokenizer.lr").
void check_finite_state(const std::map<std::string, at::Tensor>& tensors, int64_t step,
                        const std::string& checkpoint_path, const std::string& lr_key);

// Unreadable images that data.skip_bad_files let a command skip. report() logs how many were
// skipped once more than at the last report, naming the first few, and with a `list_path` writes
// all of their names there (one per line, atomically). Does nothing for data sets that never skip.
class SkippedFiles {
 public:
  SkippedFiles(std::shared_ptr<const Dataset> data, std::string list_path = {})
      : data_(std::move(data)), list_path_(std::move(list_path)) {}
  void report();

 private:
  std::shared_ptr<const Dataset> data_;
  std::string list_path_;
  int64_t reported_ = 0;
};

// Where a restart of a data-parallel run whose process group failed begins: "restart every rank
// with --resume: the run continues from step S, its last checkpoint", or, before the first
// checkpoint, that it must start again with --overwrite.
std::string restart_hint(const std::string& checkpoint_path);

// Writes text to a file atomically (temporary file, fsync, rename).
void write_text_atomic(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
bool file_exists(const std::string& path);

torch::Device to_device(const std::string& resolved_device);

}  // namespace seqgan
