// tfm: one binary, subcommands (DESIGN.md, "Command line and run directory").
#include <cstring>
#include <iostream>
#include <string>

#include "data/prepare.h"
#include "kernels/core/check.h"
#include "trainer/average.h"
#include "trainer/evaluate.h"
#include "trainer/score.h"
#include "trainer/train.h"
#include "trainer/translate.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"train", tfm::train_main, "train a Transformer (tfm train --help)"},
    {"prepare", tfm::prepare_main, "parallel text → SentencePiece + HDF5 shards (tfm prepare --help)"},
    {"average", tfm::average_main, "average the weights of checkpoints (tfm average --help)"},
    {"eval", tfm::eval_main, "loss, perplexity and BLEU of a checkpoint on a split (tfm eval --help)"},
    {"translate", tfm::translate_main, "text in, text out with beam search (tfm translate --help)"},
    {"score", tfm::score_main, "sacreBLEU-compatible BLEU of a hypothesis file (tfm score --help)"},
};

void usage(std::ostream& os) {
  os << "tfm — train the Transformer of \"Attention Is All You Need\"\n\n"
     << "Usage: tfm COMMAND [options]     (tfm COMMAND --help for its options)\n\nCommands:\n";
  for (const Command& c : kCommands) os << "  " << c.name << std::string(10 - std::strlen(c.name), ' ') << c.help << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    usage(std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const tfm::Error& e) {
      std::cerr << "tfm " << c.name << ": error: " << e.what() << "\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "tfm " << c.name << ": unexpected error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "tfm: unknown command '" << argv[1] << "'\n\n";
  usage(std::cerr);
  return 2;
}
