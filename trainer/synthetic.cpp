#include "trainer/synthetic.h"

#include <algorithm>

#include "kernels/core/check.h"

namespace tfm {

void SyntheticTask::validate() const {
  TFM_CHECK(kind == "copy" || kind == "reverse" || kind == "sort",
            "--synthetic: expected copy, reverse or sort, got '", kind, "'");
  TFM_CHECK(vocab_size > 5, "--vocab-size: the synthetic task needs more than 5 ids, got ",
            vocab_size);
  TFM_CHECK(min_len >= 1 && max_len >= min_len, "--min-len/--max-len: need 1 ≤ min ≤ max, got ",
            min_len, " and ", max_len);
}

Batch SyntheticTask::batch(uint64_t k, int64_t batch_tokens) const {
  uint64_t state = mix64(seed ^ mix64(k));
  auto next = [&] { return state = mix64(state); };
  std::vector<std::vector<int32_t>> src, tgt;
  int64_t longest = 0;
  while (true) {
    int64_t len = min_len + int64_t(next() % uint64_t(max_len - min_len + 1));
    int64_t padded = int64_t(src.size() + 1) * 2 * (std::max(longest, len) + 1);
    if (!src.empty() && padded > batch_tokens) break;
    std::vector<int32_t> x(static_cast<size_t>(len));
    for (auto& t : x) t = int32_t(4 + next() % uint64_t(vocab_size - 4));
    std::vector<int32_t> y = x;
    if (kind == "reverse") std::reverse(y.begin(), y.end());
    if (kind == "sort") std::sort(y.begin(), y.end());
    src.push_back(std::move(x));
    tgt.push_back(std::move(y));
    longest = std::max(longest, len);
  }
  return make_batch(src, tgt);
}

}  // namespace tfm
