// The demo report: built by `seqgan report` from a run directory, self-contained, and opened in
// headless Chromium (Debian's `chromium`), which must load it with every image decoded and take
// a screenshot.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "python_fixtures.h"
#include "report/html.h"
#include "seqgan/cli.h"
#include "seqgan/image.h"
#include "tiny.h"

using namespace seqgan;

namespace {

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path);
  for (const auto& l : lines) out << l << "\n";
}

// A demo directory with every file the report reads, made of small synthetic pieces.
std::string fake_demo_dir() {
  const std::string dir = test::temp_dir("report");
  torch::manual_seed(0);
  for (const std::string png : {"reconstructions.png", "samples-ar/grid.png", "samples-nar/grid.png", "visualization.png"}) {
    std::filesystem::create_directories(std::filesystem::path(dir + "/" + png).parent_path());
    write_png(dir + "/" + png, at::rand({1, 24, 40}) * 2 - 1);
  }
  std::vector<std::string> p1, ar;
  for (int s = 10; s <= 100; s += 10) {
    p1.push_back("{\"kind\":\"tokenizer_phase1\",\"step\":" + std::to_string(s) + ",\"l1\":" + std::to_string(1.0 / s) +
                 ",\"perceptual\":" + std::to_string(2.0 / s) + ",\"codes_in_batch\":" + std::to_string(s) +
                 ",\"perplexity\":" + std::to_string(s / 2) + "}");
    ar.push_back("{\"kind\":\"train\",\"step\":" + std::to_string(s) + ",\"loss\":" + std::to_string(3.0 - s / 100.0) + "}");
  }
  p1.push_back("{\"kind\":\"tokenizer_phase1\",\"step\":");  // a line cut short by an interruption
  write_lines(dir + "/tokenizer-phase1/metrics.jsonl", p1);
  write_lines(dir + "/ar/metrics.jsonl", ar);
  nlohmann::json demo{{"machine", "test machine <2 cores>"},
                      {"finished", "finished now"},
                      {"settings", "train_ar.iterations=3"},
                      {"stages", {{{"name", "tokenizer phase 1"}, {"seconds", 75.0}, {"commands", {"seqgan train-tokenizer"}}}}}};
  write_lines(dir + "/demo.json", {demo.dump()});
  nlohmann::json metrics{{"feature_network", "classifier resnet (test)"},
                         {"feature_weights", "eval.safetensors"},
                         {"tokenizers", {{{"name", "phase 1"}, {"rfid", 1.5}, {"psnr_db", 17.2}, {"codebook_usage", 0.5},
                                          {"codes_used", 8}, {"codebook_size", 16}, {"perplexity", 6.0}, {"count", 100}}}},
                         {"generation", {{{"name", "AR samples"}, {"fid", 3.25}, {"is", 7.5}, {"is_std", 0.1}, {"count", 100}}}},
                         {"usage_histogram", {5, 0, 3, 9, 1}}};
  write_lines(dir + "/metrics.json", {metrics.dump()});
  return dir;
}

}  // namespace

TEST(Report, HtmlPiecesAreEscapedAndEncoded) {
  EXPECT_EQ(report::escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(report::base64(""), "");
  EXPECT_EQ(report::base64("f"), "Zg==");
  EXPECT_EQ(report::base64("fo"), "Zm8=");
  EXPECT_EQ(report::base64("foobar"), "Zm9vYmFy");
  EXPECT_NE(report::embed_png("/nonexistent.png", "x").find("missing: /nonexistent.png"), std::string::npos);
  const std::string chart = report::line_chart("t", {{"a", {{0, 1}, {1, 2}}}, {"empty", {}}}, "x", "y");
  EXPECT_NE(chart.find("<polyline"), std::string::npos);
  EXPECT_EQ(chart.find("empty"), std::string::npos);  // series without points get no legend entry
  EXPECT_NE(report::line_chart("t", {}, "x", "y").find("no data"), std::string::npos);
}

TEST(Report, OpensInHeadlessChromiumWithEveryImage) {
  const std::string dir = fake_demo_dir();
  testing::internal::CaptureStdout();
  const int code = run_cli({"report", dir});
  testing::internal::GetCapturedStdout();
  ASSERT_EQ(code, 0);
  const std::string html = test::read_file_text(dir + "/report.html");
  // Self-contained: images are data URIs, nothing is fetched.
  EXPECT_EQ(html.find("src='http"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_NE(html.find("classifier resnet (test)"), std::string::npos);
  EXPECT_NE(html.find("3.250"), std::string::npos);  // the FID of the metrics table
  EXPECT_NE(html.find("test machine &lt;2 cores&gt;"), std::string::npos);

  const std::string flags = "--headless --no-sandbox --disable-gpu --disable-background-networking "
                            "--disable-dev-shm-usage --user-data-dir=" + dir + "/chromium-profile";
  const std::string dom = dir + "/dom.html";
  const std::string cmd = "chromium " + flags + " --virtual-time-budget=5000 --dump-dom 'file://" + dir +
                          "/report.html' > " + dom + " 2> " + dir + "/chromium.log";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << test::read_file_text(dir + "/chromium.log")
                                         << "\n---> HINT: install Debian's chromium (scripts/setup.sh does)";
  const std::string loaded = test::read_file_text(dom);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(loaded, m, std::regex("data-images=\"(\\d+)\" data-images-loaded=\"(\\d+)\"")))
      << loaded.substr(0, 2000);
  EXPECT_EQ(m[1], "4");  // reconstructions, AR and NAR grids, visualisation
  EXPECT_EQ(m[1], m[2]) << "images that did not decode";

  const std::string shot = dir + "/report.png";
  const std::string shoot = "chromium " + flags + " --window-size=1200,2400 --screenshot=" + shot + " 'file://" + dir +
                            "/report.html' > /dev/null 2>> " + dir + "/chromium.log";
  ASSERT_EQ(std::system(shoot.c_str()), 0) << test::read_file_text(dir + "/chromium.log");
  const Image png = read_image(shot, 3);
  EXPECT_EQ(png.width, 1200);
  EXPECT_GT(png.height, 1000);
  test::remove_tree(dir);
}
