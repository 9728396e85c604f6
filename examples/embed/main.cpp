// A program that embeds seqgan through its public headers alone: it tokenizes an image and
// writes the reconstruction, then samples a few images and writes them.
//
//   seqgan_embed TOKENIZER.safetensors TRANSFORMER.safetensors IMAGE OUT_DIR
//
// Build it against an installed or built seqgan: include/ on the include path, libseqgan and
// libtorch on the link line (see examples/embed/CMakeLists.txt).
#include <seqgan/error.h>
#include <seqgan/image.h>
#include <seqgan/models.h>

#include <cmath>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s TOKENIZER TRANSFORMER IMAGE OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[4];
  try {
    const auto tok = seqgan::TokenizerModel::load(argv[1]);
    const seqgan::Image image = seqgan::read_image(argv[3], tok.channels());
    const at::Tensor codes = tok.encode({image});
    const seqgan::Image back = tok.decode(codes).front();
    seqgan::write_png(out + "/reconstruction.png", back);
    std::printf("encoded %dx%d image into %lldx%lld codes of %lld; reconstruction: %s/reconstruction.png\n", image.width,
                image.height, static_cast<long long>(codes.size(1)), static_cast<long long>(codes.size(2)),
                static_cast<long long>(tok.codebook_size()), out.c_str());

    const auto gen = seqgan::GeneratorModel::load(argv[2]);
    seqgan::SampleRequest request;
    if (gen.num_classes() > 0) request.classes = {0, 0, gen.num_classes() - 1, gen.num_classes() - 1};
    else request.count = 4;
    request.seed = 1;
    const auto samples = tok.decode(gen.sample(request));
    for (size_t i = 0; i < samples.size(); ++i) seqgan::write_png(out + "/sample-" + std::to_string(i) + ".png", samples[i]);
    std::printf("sampled %zu images (%s): %s/sample-*.png\n", samples.size(), gen.autoregressive() ? "AR" : "NAR", out.c_str());
  } catch (const seqgan::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
