// Synthetic sequence-to-sequence tasks for debugging and tests, generated in memory:
//   copy:    y = x          reverse: y = reverse(x)          sort: y = sorted(x)
// Symbols are ids [4, vocab) (0–3 are pad/unk/bos/eos); lengths are uniform in
// [min_len, max_len]. Batch k of a stream is a pure function of (seed, k), so runs reproduce and
// a resumed run can regenerate exactly the batch it would have seen.
#pragma once
#include <cstdint>
#include <string>

#include "data/batch.h"

namespace tfm {

struct SyntheticTask {
  std::string kind = "reverse";
  int64_t vocab_size = 32;
  int64_t min_len = 8, max_len = 16;
  uint64_t seed = 1;

  void validate() const;
  // The k-th batch: pairs are added while the padded token count of both sides,
  // B·(Ts + Tt), stays within batch_tokens (at least one pair per batch).
  Batch batch(uint64_t k, int64_t batch_tokens) const;
};

}  // namespace tfm
