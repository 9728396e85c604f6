// libFuzzer entry point for image-label files (data.val_labels: "IMAGE CLASS" lines or ImageNet's
// LOC_val_solution.csv), parsed by parse_image_labels. A seqgan::Error is the expected answer to
// bad text; the property: every image and class is a non-empty word of the input, without
// separators. Seeds: fuzz/corpus/labels/.
#include <cstddef>
#include <cstdint>
#include <string>

#include "seqgan/data.h"
#include "seqgan/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& [image, cls] : seqgan::parse_image_labels(text, "<fuzz>")) {
      if (cls.empty() || cls.find_first_of(" ,\t\n") != std::string::npos) __builtin_trap();
      if (image.find_first_of(",\t\n") != std::string::npos) __builtin_trap();
    }
  } catch (const seqgan::Error&) {
  }
  return 0;
}
