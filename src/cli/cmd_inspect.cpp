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
  if (!args.flag("--json")) {
    std::cout << path << "\n" << safetensors::describe(header);
    return 0;
  }
  nlohmann::ordered_json j;
  j["metadata"] = header.metadata;
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
  c.info.summary = "Print a safetensors file's metadata and every tensor's name, dtype and shape";
  c.positional("FILE");
  c.flag("--json", "print JSON");
  c.run = run_inspect;
  return c;
}

}  // namespace seqgan::cli
