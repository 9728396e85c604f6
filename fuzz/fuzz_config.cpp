// libFuzzer entry point for the configuration parser: JSON text in, either a validated Config or
// a seqgan::Error out. The resolved config must print and parse back to itself.
#include <cstddef>
#include <cstdint>
#include <string>

#include "seqgan/config.h"
#include "seqgan/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const seqgan::Config c = seqgan::config_from_json(text, "<fuzz>");
    const std::string printed = seqgan::config_to_json(c);
    if (seqgan::config_to_json(seqgan::config_from_json(printed)) != printed) __builtin_trap();
  } catch (const seqgan::Error&) {
  }
  // The --set path: the first line is a key, the rest a value.
  const auto nl = text.find('\n');
  if (nl != std::string::npos) {
    try {
      seqgan::Config c = seqgan::make_preset("fmnist");
      seqgan::config_set(c, text.substr(0, nl), text.substr(nl + 1));
    } catch (const seqgan::Error&) {
    }
  }
  return 0;
}
