// `seqgan bench --json` on a tiny configuration: every figure is present, positive, and the
// comparisons carry their ratio; the PyTorch reference (tools/reference) loads seqgan's weights
// and reproduces its outputs, for a tokenizer with the phase-2 window attention (padded windows
// included: 8x8 latents, window 3), the paper tokenizer and two transformers. (Speeds themselves
// are not asserted: see docs/performance.md.)
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
                                    "tokenizer.decoder_attn_pairs=1", "--set", "tokenizer.attn_window=3", "--set",
                                    "tokenizer.attn_heads=2", "--set", "sample.steps=2"});
  const std::string out = testing::internal::GetCapturedStdout();
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(code, 0) << err;
  const auto j = nlohmann::json::parse(out);
  ASSERT_TRUE(j.is_array());
  std::set<std::string> names;
  for (const auto& f : j) {
    names.insert(f["name"].get<std::string>());
    const std::string name = f["name"];
    if (name.size() > 9 && name.compare(name.size() - 9, 9, "_max_diff") == 0) {
      EXPECT_GE(f["value"].get<double>(), 0.0) << f.dump();
      EXPECT_LT(f["value"].get<double>(), 1e-4) << f.dump();  // float32, different summation orders
      EXPECT_EQ(f["unit"], "") << f.dump();
    } else {
      EXPECT_GT(f["value"].get<double>(), 0.0) << f.dump();
    }
    EXPECT_TRUE(f.contains("unit")) << f.dump();
  }
  for (const std::string n :
       {"matmul_peak_f32", "memory_bandwidth", "transformer_train", "transformer_train_gflops", "transformer_train_peak_fraction",
        "ar_sample_b1_cache", "ar_sample_b1_recompute", "ar_kv_speedup_b1", "ar_decode_floor_b1", "ar_decode_floor_fraction_b1",
        "nar_sample", "tokenizer_train_fmnist", "tokenizer_train_paper64", "tokenizer_encode", "tokenizer_decode",
        "data_loader", "data_loader_vs_train_step", "peak_memory", "tokenizer_train_vs_python_paper64",
        "tokenizer_train_vs_python_fmnist", "transformer_train_vs_python", "transformer_train_vs_python_fmnist",
        "tokenizer_train_paper64_python_max_diff", "tokenizer_train_fmnist_python_max_diff",
        "transformer_train_python_max_diff", "transformer_train_fmnist_python_max_diff", "loader_256",
        "loader_256_per_core", "loader_256_python", "loader_256_vs_python", "adm_inception_256_cpu", "adm_pr_pairs_cpu",
        "adm_gaussian_fit_cpu", "adm_frechet_cpu", "adm_eval_50k_projected_cpu"})
    EXPECT_TRUE(names.count(n)) << "missing " << n << " in\n" << out;
  for (const auto& f : j) {
    if (f["name"] == "ar_kv_speedup_b1" || f["name"] == "tokenizer_train_vs_python_fmnist") {
      EXPECT_DOUBLE_EQ(f["ratio"].get<double>(), f["value"].get<double>());
    }
  }
}
