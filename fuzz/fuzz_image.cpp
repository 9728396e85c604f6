// libFuzzer entry point for image decoding (JPEG through libjpeg-turbo, PNG through libpng, WebP
// through libwebp, recognised by content) and Pillow's resampling of what decodes. Any input must
// either decode or throw seqgan::Error; crashes, hangs, leaks, other exceptions and oversized
// allocations are findings. Seeds in fuzz/corpus/image.
#include <cstddef>
#include <cstdint>

#include "seqgan/error.h"
#include "seqgan/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const int channels : {3, 1}) {
    try {
      const seqgan::Image image = seqgan::decode_image(data, size, channels, "<fuzz>");
      if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * channels) __builtin_trap();
      // Resampling the decoded image: small targets keep each run fast whatever the input's size.
      if (static_cast<size_t>(image.width) * image.height <= (size_t{1} << 20)) {
        const auto filter = static_cast<seqgan::ResizeFilter>(size % 4);
        const seqgan::Image small = seqgan::resize_image(image, 1 + image.width % 17, 1 + image.height % 13, filter);
        if (small.pixels.size() != static_cast<size_t>(small.width) * small.height * channels) __builtin_trap();
        seqgan::adm_center_crop(image, 1 + static_cast<int>(size % 7));
      }
    } catch (const seqgan::Error&) {
    }
  }
  return 0;
}
