#include <iostream>

int main() {
  std::cout << "seqgan\n";
  return 0;
}
