// Trains the small classifiers of features/classifier.h on a labelled data set (`seqgan
// train-classifier`): the perceptual-loss network and the evaluation feature network of data sets
// without public pretrained weights (SPEC section 5).
#pragma once

#include <cstdint>
#include <string>

#include "features/classifier.h"
#include "seqgan/data.h"

namespace seqgan {

struct ClassifierTrainOptions {
  // arch.channels == 0 or arch.num_classes == 0: taken from the training set.
  ClassifierArch arch;
  // "loss" (perceptual network) or "eval" (evaluation network), stored in the checkpoint so
  // that the evaluation refuses the loss network; empty: not recorded.
  std::string role;
  int epochs = 2;
  int64_t batch_size = 128;
  double lr = 3e-3;           // peak AdamW learning rate: linear warm-up, then cosine decay to 0
  int64_t warmup_steps = 100;
  double weight_decay = 5e-4;
  // Light augmentation on the batch: random translation by up to `shift` pixels (borders
  // replicated) and, with hflip, a horizontal mirror with probability 1/2. Shifts only pay off in
  // longer runs: on Fashion-MNIST, 2 epochs reach 92.0% without them and 90.9% with shift = 2.
  int shift = 0;
  bool hflip = true;
  int pad = 0;                // constant padding before resizing to arch.resolution (Fashion-MNIST 28 -> 32: 2)
  uint64_t seed = 0;          // initialisation, sample order and augmentation
  int threads = 0;            // intra-op threads; 0: all available cores
  int num_workers = 1;        // loader threads decoding batches
  std::string device = "auto";
  std::string metrics_path;   // metrics.jsonl to append to; empty: none
  int log_every = 50;         // steps between metrics lines

  std::string to_json() const;  // recorded in the checkpoint
};

struct ClassifierResult {
  ClassifierArch arch;        // as resolved from the options and the data
  double test_accuracy = 0;   // fraction in [0, 1]
  double train_accuracy = 0;  // over the last epoch, with augmentation, in train mode
  double train_loss = 0;      // mean over the last epoch
  int64_t steps = 0;
  double seconds = 0;         // wall time of training and evaluation
  std::string path;
};

// Trains from scratch (AdamW, batch norm, augmentation), evaluates the accuracy on `test`, and
// writes the weights, the architecture, the options and the test accuracy to `out_path` as a
// "classifier" checkpoint, atomically. Progress goes through seqgan::Progress, one log line per
// epoch, metrics to options.metrics_path. Throws when the data sets are unlabelled, their labels
// exceed the classes, or the training set holds fewer samples than one batch.
ClassifierResult train_classifier(const ClassifierTrainOptions& options, Dataset& train, Dataset& test,
                                  const std::string& out_path);

// Top-1 accuracy of `model` on `data`, prepared as train_classifier prepares its test set
// (options.pad, model resolution and channels; batch_size, num_workers, device).
double classifier_accuracy(Classifier& model, const Dataset& data, const ClassifierTrainOptions& options);

}  // namespace seqgan
