// `seqgan bench --json` on a tiny configuration: every figure is present, positive, and the
// comparisons carry their ratio. (Speeds themselves are not asserted: see docs/performance.md.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "seqgan/cli.h"

TEST(BenchCli, JsonListsEveryFigure) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  const int code = seqgan::run_cli({"bench", "--quick", "--json", "--threads", "2", "--set", "transformer.layers=1", "--set",
                                    "transformer.width=32", "--set", "transformer.heads=2", "--set", "transformer.mlp=64",
                                    "--set", "tokenizer.base_channels=8", "--set", "tokenizer.norm_groups=4", "--set",
                                    "sample.steps=2"});
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(code, 0) << err;
  const auto j = nlohmann::json::parse(out);
  ASSERT_TRUE(j.is_array());
  std::set<std::string> names;
  for (const auto& f : j) {
    names.insert(f["name"].get<std::string>());
    EXPECT_GT(f["value"].get<double>(), 0.0) << f.dump();
    EXPECT_TRUE(f.contains("unit")) << f.dump();
  }
  for (const std::string n :
       {"matmul_peak_f32", "memory_bandwidth", "transformer_train", "transformer_train_gflops", "transformer_train_peak_fraction",
        "ar_sample_b1_cache", "ar_sample_b1_recompute", "ar_kv_speedup_b1", "ar_decode_floor_b1", "ar_decode_floor_fraction_b1",
        "nar_sample", "tokenizer_train_step", "tokenizer_encode", "tokenizer_decode", "peak_memory"})
    EXPECT_TRUE(names.count(n)) << "missing " << n << " in\n" << out;
  for (const auto& f : j)
    if (f["name"] == "ar_kv_speedup_b1") EXPECT_DOUBLE_EQ(f["ratio"].get<double>(), f["value"].get<double>());
}
