// The FID InceptionV3 against torchvision's Inception3 adapted to pytorch-fid's pooling
// (tools/inception_fixtures.py): pool features and logits for resized, grey and 299x299 inputs;
// the converter's refusal of a network of another layout; strict loading.
#include <gtest/gtest.h>

#include <cstdlib>

#include "features/classifier.h"
#include "features/inception.h"
#include "python_fixtures.h"
#include "seqgan/error.h"
#include "seqgan/safetensors.h"
#include "tiny.h"

using namespace seqgan;

namespace {

std::string fixture_dir() {
  static const std::string dir =
      test::python_fixture_dir("inception", {"inception_fixtures.py", "convert_inception.py", "weights_io.py"});
  return dir;
}

}  // namespace

TEST(Inception, MatchesTorchvisionWithPytorchFidPooling) {
  const std::string dir = fixture_dir();
  ASSERT_FALSE(dir.empty());
  torch::set_num_threads(2);
  const auto net = load_feature_network("inception", dir + "/inception.safetensors");
  EXPECT_EQ(net->description(), "inception-v3 (pytorch-fid)");
  const auto expected = safetensors::load(dir + "/expected.safetensors").tensors;
  torch::NoGradGuard ng;
  for (const std::string c : {"rgb64x80", "grey32", "rgb299"}) {
    const auto out = net->taps(expected.at(c + ".input"), {"features", "logit", "spatial"});
    EXPECT_EQ(out.at("features").size(1), InceptionV3Fid::kFeatures);
    EXPECT_EQ(out.at("logit").size(1), InceptionV3Fid::kNumClasses);
    EXPECT_EQ(out.at("spatial").size(1), InceptionV3Fid::kSpatialFeatures);
    test::expect_close(out.at("features"), expected.at(c + ".features"), c + ".features");
    test::expect_close(out.at("logit"), expected.at(c + ".logit"), c + ".logit");
    test::expect_close(out.at("spatial"), expected.at(c + ".spatial"), c + ".spatial");
    // The spatial tap alone stops at Mixed_6d and gives the same values.
    test::expect_close(net->taps(expected.at(c + ".input"), {"spatial"}).at("spatial"), expected.at(c + ".spatial"),
                       c + ".spatial alone");
  }
}

TEST(Inception, AdmResizeMatchesTensorflowLegacyBilinear) {
  const std::string dir = fixture_dir();
  ASSERT_FALSE(dir.empty());
  torch::set_num_threads(2);
  const auto net = std::dynamic_pointer_cast<InceptionV3Fid>(load_feature_network("inception", dir + "/inception.safetensors"));
  ASSERT_TRUE(net);
  net->set_resize(InceptionV3Fid::Resize::kAdm);
  const auto expected = safetensors::load(dir + "/expected.safetensors").tensors;
  torch::NoGradGuard ng;
  for (const std::string c : {"rgb64x80", "grey32", "rgb299"}) {
    const auto out = net->taps(expected.at(c + ".input"), {"features"});
    test::expect_close(out.at("features"), expected.at(c + ".adm_features"), c + ".adm_features");
  }
  // The two resizes differ, so the test above can tell them apart.
  EXPECT_GT((expected.at("rgb64x80.adm_features") - expected.at("rgb64x80.features")).abs().max().item<double>(), 1e-3);
}

TEST(Inception, LoadingIsStrict) {
  const std::string dir = test::temp_dir("inception-load");
  const std::string classifier = test::stand_in_loss_network(dir);
  try {
    load_feature_network("inception", classifier);
    ADD_FAILURE() << "a classifier loaded as InceptionV3";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected inception weights"), std::string::npos) << e.what();
  }
  try {
    load_feature_network("inception", dir + "/missing.safetensors");
    ADD_FAILURE() << "a missing file loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("convert_inception.py"), std::string::npos) << e.what();
  }
  test::remove_tree(dir);
}

TEST(Inception, ConverterRefusesTorchvisionImageNetLayout) {
  // torchvision's own Inception3 has 1000 classes and an auxiliary head: not the FID network.
  const std::string dir = test::temp_dir("inception-convert");
  const std::string tools = std::string(SEQGAN_SOURCE_DIR) + "/tools";
  const std::string make = "/usr/bin/python3 -c \"import torch, torchvision; torch.save(torchvision.models.inception."
                           "Inception3(init_weights=False).state_dict(), '" + dir + "/tv.pth')\"";
  ASSERT_EQ(std::system(make.c_str()), 0) << make;
  const std::string log = dir + "/log.txt";
  const std::string convert = "/usr/bin/python3 " + tools + "/convert_inception.py " + dir + "/tv.pth " + dir +
                              "/out.safetensors > " + log + " 2>&1";
  EXPECT_NE(std::system(convert.c_str()), 0);
  const std::string output = test::read_file_text(log);
  EXPECT_NE(output.find("unexpected tensor 'AuxLogits"), std::string::npos) << output;
  EXPECT_NE(output.find("tensor 'fc.weight' has wrong shape"), std::string::npos) << output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.safetensors"));
  test::remove_tree(dir);
}
