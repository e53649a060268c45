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

// splitmix64's finaliser: a portable mixing of seeds, so the same seed gives the same data (and
// dropout masks) on every platform.
inline uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

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
