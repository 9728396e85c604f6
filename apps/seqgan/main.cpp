// The `seqgan` command: a thin shell over seqgan::run_cli.
#include <string>
#include <vector>

#include "seqgan/cli.h"

int main(int argc, char** argv) {
  return seqgan::run_cli(std::vector<std::string>(argv + 1, argv + argc));
}
