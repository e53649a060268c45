// Writes a complete prepared dataset (tokenizer, shards, manifest) straight from token ids, with
// no text and no encoding: for tests, benchmarks and synthetic tasks that need the real on-disk
// format. Examples are generated in order and split into contiguous runs per shard, as prepare
// does. The manifest's fingerprint is left empty (it describes no text inputs).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace tfm {

struct IdSplitSpec {
  std::string name;  // train, valid, test
  int64_t num_examples = 0;
  int64_t num_shards = 1;
  // Fills example i's ids (no BOS/EOS), each in [0, vocab_size).
  std::function<void(int64_t i, std::vector<int32_t>& src, std::vector<int32_t>& tgt)> example;
};

// `dir` is created if needed; existing files of the same names are replaced.
void write_id_dataset(const std::string& dir, const Tokenizer& tokenizer, const std::vector<IdSplitSpec>& splits);

}  // namespace tfm
