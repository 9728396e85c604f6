// The data set and transforms a configuration names: what training, evaluation and the data
// commands share, so that none of them reaches into another's room for it.
#pragma once

#include <memory>
#include <string>

#include "seqgan/config.h"
#include "seqgan/data.h"

namespace seqgan {

// The split ("train" or "test") of the data set named by config.data. Image folders use
// data.root for train and data.val_root for test.
std::shared_ptr<Dataset> open_dataset(const DataConfig& data, const std::string& split);

// data.root, data.val_root and data.val_labels made absolute, so that a model file that stores them
// still finds its data when used from another folder.
void make_data_paths_absolute(DataConfig& data);

// Transforms for training (random crop / flip as configured) or evaluation (centre crop).
TransformOptions train_transform(const DataConfig& data);
TransformOptions eval_transform(const DataConfig& data);

}  // namespace seqgan
