// Training through the public API (seqgan/train.h): the callback sees every metrics row as it is
// written, the stop flag stops with a checkpoint, resume_overrides apply on resume, and the run
// directory is the command line's.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "seqgan/checkpoint.h"
#include "seqgan/error.h"
#include "seqgan/train.h"
#include "tiny.h"

using namespace seqgan;

namespace {

// The rows of a run's metrics.jsonl as (series, step, values).
std::vector<MetricsRow> rows_of(const std::string& run_dir) {
  std::vector<MetricsRow> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    MetricsRow r;
    r.series = j["kind"];
    r.step = j["step"];
    for (const auto& [k, v] : j.items())
      if (v.is_number() && k != "step") r.values[k] = v.get<double>();
    out.push_back(r);
  }
  return out;
}

void expect_same_rows(const std::vector<MetricsRow>& seen, const std::vector<MetricsRow>& written) {
  ASSERT_EQ(seen.size(), written.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].series, written[i].series) << i;
    EXPECT_EQ(seen[i].step, written[i].step) << i;
    for (const auto& [k, v] : written[i].values) {
      ASSERT_TRUE(seen[i].values.count(k)) << k << " of row " << i;
      EXPECT_NEAR(seen[i].values.at(k), v, 1e-12 + 1e-8 * std::abs(v)) << k << " of row " << i;
    }
  }
}

}  // namespace

TEST(TrainApi, TokenizerPhasesReportEveryRowStopOnTheFlagAndResume) {
  const std::string dir = test::temp_dir("train-api-tokenizer");
  TokenizerTrainOptions o;
  o.config = test::tiny_tokenizer_config(test::stand_in_loss_network(dir));
  o.run_dir = dir + "/p1";
  std::vector<MetricsRow> seen;
  o.on_metrics = [&](const MetricsRow& row) { seen.push_back(row); };
  o.stop = [&] { return seen.size() >= 3; };  // a program stopping the run from its callback
  const TrainResult stopped = train_tokenizer(o);
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.step, 3);
  EXPECT_EQ(read_checkpoint_meta(dir + "/p1/checkpoint.safetensors").step, 3);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().series, "tokenizer_phase1");
  EXPECT_EQ(seen.front().total_steps, o.config.train_tokenizer.iterations);
  EXPECT_TRUE(seen.front().values.count("l1"));

  o.stop = nullptr;
  o.resume = true;
  o.resume_overrides = {"train_tokenizer.iterations=8"};
  const TrainResult done = train_tokenizer(o);
  EXPECT_FALSE(done.interrupted);
  EXPECT_EQ(done.step, 8);
  EXPECT_EQ(done.model_path, dir + "/p1/tokenizer.safetensors");
  expect_same_rows(seen, rows_of(dir + "/p1"));

  // What fixes the model cannot change on resume.
  o.resume_overrides = {"tokenizer.codebook_size=32"};
  try {
    train_tokenizer(o);
    ADD_FAILURE() << "a resumed run took tokenizer.codebook_size";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot apply to the resumed run"), std::string::npos) << e.what();
  }
  // A key set twice takes its last value, as on the command line: layered --set lists that come
  // back to the run's own value change nothing.
  o.resume_overrides = {"tokenizer.codebook_size=32", "train_tokenizer.iterations=4",
                        "tokenizer.codebook_size=" + std::to_string(o.config.tokenizer.codebook_size),
                        "train_tokenizer.iterations=8"};
  EXPECT_EQ(train_tokenizer(o).step, 8);

  TokenizerTrainOptions p2;
  p2.config = o.config;
  p2.phase = 2;
  p2.init = done.model_path;
  p2.run_dir = dir + "/p2";
  seen.clear();
  p2.on_metrics = [&](const MetricsRow& row) { seen.push_back(row); };
  const TrainResult phase2 = train_tokenizer(p2);
  EXPECT_EQ(phase2.step, o.config.phase2.train.iterations);
  ASSERT_EQ(seen.size(), static_cast<size_t>(o.config.phase2.train.iterations));  // log_every 1
  EXPECT_EQ(seen.back().series, "tokenizer_phase2");
  expect_same_rows(seen, rows_of(dir + "/p2"));
}

TEST(TrainApi, TransformerReportsTrainingAndValidationRows) {
  const std::string dir = test::temp_dir("train-api-transformer");
  test::write_toy_tokens(dir + "/tokens.safetensors", 96, 4, 3, 5, 16);
  TransformerTrainOptions o;
  o.config = make_preset("fmnist");
  o.config.threads = 2;
  o.config.device = "cpu";
  config_set(o.config, "transformer.layers", "1");
  config_set(o.config, "transformer.width", "32");
  config_set(o.config, "transformer.heads", "2");
  config_set(o.config, "transformer.mlp", "64");
  for (const std::string k : {"train_ar.batch_size=8", "train_ar.iterations=4", "train_ar.log_every=2",
                              "train_ar.val_every=2", "train_ar.val_fraction=0.1"})
    config_apply_override(o.config, k);
  o.run_dir = dir + "/ar";
  o.tokens = dir + "/tokens.safetensors";
  std::vector<MetricsRow> seen;
  o.on_metrics = [&](const MetricsRow& row) { seen.push_back(row); };
  const TrainResult r = train_transformer(o);
  EXPECT_EQ(r.step, 4);
  EXPECT_EQ(r.model_path, dir + "/ar/transformer.safetensors");
  std::vector<std::string> series;
  for (const auto& row : seen) series.push_back(row.series + "@" + std::to_string(row.step));
  ASSERT_EQ(series, (std::vector<std::string>{"train@2", "val@2", "train@4", "val@4"}));
  EXPECT_DOUBLE_EQ(seen.back().values.at("loss"), r.val_loss);
  expect_same_rows(seen, rows_of(dir + "/ar"));
}
