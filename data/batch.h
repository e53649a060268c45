// Batch: what the data side hands the trainer. Sentence pairs padded to the longest in the batch.
// Special ids are fixed across tokenizer, reader and model: pad 0, unk 1, bos 2, eos 3.
#pragma once
#include <cstdint>
#include <vector>

namespace tfm {

inline constexpr int32_t kPadId = 0, kUnkId = 1, kBosId = 2, kEosId = 3;

struct Batch {
  int64_t size = 0;      // B, sentence pairs
  int64_t src_len = 0;   // Ts, longest source incl. its EOS
  int64_t tgt_len = 0;   // Tt, longest target incl. BOS (input) / EOS (output)
  std::vector<int32_t> src;          // [B, Ts]: x1 … xn EOS, then pad
  std::vector<int32_t> src_lengths;  // [B], ≥ 1
  std::vector<int32_t> tgt_in;       // [B, Tt]: BOS y1 … ym, then pad (decoder input)
  std::vector<int32_t> tgt_out;      // [B, Tt]: y1 … ym EOS, then pad (what is predicted)
  std::vector<int32_t> tgt_lengths;  // [B], m + 1
  int64_t src_tokens() const { int64_t n = 0; for (int32_t l : src_lengths) n += l; return n; }
  int64_t tgt_tokens() const { int64_t n = 0; for (int32_t l : tgt_lengths) n += l; return n; }
};

// Pads token sequences (without BOS/EOS) into a Batch, adding EOS to sources and BOS/EOS to
// targets. Used by the readers and by the synthetic tasks, so every producer agrees.
Batch make_batch(const std::vector<std::vector<int32_t>>& sources,
                 const std::vector<std::vector<int32_t>>& targets);

}  // namespace tfm
