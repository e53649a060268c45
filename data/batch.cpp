#include "data/batch.h"

#include <algorithm>

#include "kernels/core/check.h"

namespace tfm {

Batch make_batch(const std::vector<std::vector<int32_t>>& sources,
                 const std::vector<std::vector<int32_t>>& targets) {
  TFM_CHECK(sources.size() == targets.size(), "make_batch: ", sources.size(), " sources but ",
            targets.size(), " targets");
  Batch b;
  b.size = int64_t(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    b.src_len = std::max<int64_t>(b.src_len, int64_t(sources[i].size()) + 1);
    b.tgt_len = std::max<int64_t>(b.tgt_len, int64_t(targets[i].size()) + 1);
  }
  b.src.assign(size_t(b.size * b.src_len), kPadId);
  b.tgt_in.assign(size_t(b.size * b.tgt_len), kPadId);
  b.tgt_out.assign(size_t(b.size * b.tgt_len), kPadId);
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& s = sources[i];
    const auto& t = targets[i];
    int32_t* src = &b.src[i * size_t(b.src_len)];
    std::copy(s.begin(), s.end(), src);
    src[s.size()] = kEosId;
    int32_t* in = &b.tgt_in[i * size_t(b.tgt_len)];
    int32_t* out = &b.tgt_out[i * size_t(b.tgt_len)];
    in[0] = kBosId;
    std::copy(t.begin(), t.end(), in + 1);
    std::copy(t.begin(), t.end(), out);
    out[t.size()] = kEosId;
    b.src_lengths.push_back(int32_t(s.size() + 1));
    b.tgt_lengths.push_back(int32_t(t.size() + 1));
  }
  return b;
}

}  // namespace tfm
