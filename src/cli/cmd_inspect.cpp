// `seqgan inspect FILE.safetensors`: metadata and every tensor's name, dtype and shape.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "seqgan/safetensors.h"

namespace seqgan::cli {
namespace {
int run_inspect(const Args& args) {
  const std::string path = args.positionals().at(0);
  const auto header = safetensors::read_header(path);
  if (args.flag("--verify")) {
    // load() reads every tensor and checks it against its checksum; a damaged one throws.
    const auto file = safetensors::load(path);
    const size_t checked = file.header.checksums.size(), total = file.header.tensors.size();
    std::cout << path << ": " << (checked == 0 ? "no checksums (written by another tool); all " + std::to_string(total) +
                                                    " tensors read"
                                               : std::to_string(checked) + " of " + std::to_string(total) +
                                                     " tensors match their CRC-32")
              << "\n";
    return 0;
  }
  if (!args.flag("--json")) {
    std::cout << path << "\n" << safetensors::describe(header);
    return 0;
  }
  nlohmann::ordered_json j;
  j["metadata"] = header.metadata;
  nlohmann::ordered_json sums = nlohmann::ordered_json::object();
  for (const auto& [name, crc] : header.checksums) {
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", crc);
    sums[name] = hex;
  }
  j["crc32"] = sums;
  j["tensors"] = nlohmann::ordered_json::array();
  int64_t total = 0;
  for (const auto& t : header.tensors) {
    j["tensors"].push_back({{"name", t.name}, {"dtype", safetensors::dtype_name(t.dtype)}, {"shape", t.shape}});
    total += t.numel();
  }
  j["elements"] = total;
  std::cout << j.dump(2) << "\n";
  return 0;
}
}  // namespace

Command inspect_command() {
  Command c;
  c.info.name = "inspect";
  c.info.brief = "Print a safetensors file's metadata and tensors; --verify checks their checksums";
  c.info.summary =
      "Print a safetensors file's metadata and every tensor's name, dtype and shape; --verify checks every tensor's bytes";
  c.positional("FILE");
  c.flag("--json", "print JSON");
  c.flag("--verify", "read every tensor and check it against the checksum seqgan recorded (exit 1 when one differs)");
  c.run = run_inspect;
  return c;
}

}  // namespace seqgan::cli
