// tfm_data_prepare: `tfm prepare` on its own (argv[1] must be "prepare"), so the data layer's
// documentation test can run without the trainer's binary. The real CLI is `tfm prepare`.
#include <cstring>
#include <iostream>

#include "data/prepare.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "prepare") != 0) {
    std::cerr << "usage: tfm_data_prepare prepare [options]   (see prepare --help)\n";
    return 2;
  }
  return tfm::prepare_main(argc - 1, argv + 1);
}
