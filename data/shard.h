// One HDF5 shard of a prepared dataset (DESIGN.md, "Data", format_version 1):
//   /src/tokens, /tgt/tokens    1-D, uint16 when vocab_size ≤ 65535 else int32; the token ids of
//                               all examples of the shard back to back, no BOS/EOS, no padding
//   /src/offsets, /tgt/offsets  1-D int64, num_examples + 1 entries, offsets[0] = 0; example i
//                               is tokens[offsets[i] .. offsets[i+1])
//   attributes on /: format_version (int64, 1), num_examples (int64), vocab_size (int64),
//                    tokenizer_sha256 (fixed-length string, 64 hex digits)
// Datasets are chunked (so they can be appended while streaming and read by hyperslab) and not
// compressed (reader speed). Object timestamps are off, so the same input gives the same bytes and
// the same SHA-256. The writer works under PATH.tmp and renames to PATH only when complete.
// Every failure throws tfm::Error naming the shard (and the dataset where one is involved).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tfm {

inline constexpr int64_t kShardFormatVersion = 1;

enum class Side { src = 0, tgt = 1 };
inline const char* side_name(Side s) { return s == Side::src ? "src" : "tgt"; }

// Token storage type: uint16 when every id fits, i.e. vocab_size ≤ 65535.
inline bool tokens_fit_uint16(int64_t vocab_size) { return vocab_size <= 65535; }

// "train-00003-of-00016.h5": shard k of n of a split, as `tfm prepare` names them.
std::string shard_file_name(const std::string& split, int64_t k, int64_t n);

struct ShardStats {
  int64_t num_examples = 0;
  int64_t src_tokens = 0;  // stored ids, without EOS/BOS
  int64_t tgt_tokens = 0;
};

class ShardWriter {
 public:
  ShardWriter(std::string path, int64_t vocab_size, std::string tokenizer_sha256);
  ~ShardWriter();  // a shard never finished leaves nothing behind: its PATH.tmp is removed
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one example; ids must lie in [0, vocab_size). Either side may be empty here; the
  // prepare step decides what it keeps.
  void add(const int32_t* src, int64_t src_len, const int32_t* tgt, int64_t tgt_len);
  void add(const std::vector<int32_t>& src, const std::vector<int32_t>& tgt) {
    add(src.data(), int64_t(src.size()), tgt.data(), int64_t(tgt.size()));
  }
  // Flushes, writes the attributes, closes, fsyncs and renames PATH.tmp to PATH.
  ShardStats finish();
  const ShardStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class ShardFile {
 public:
  // Opens read-only and checks the layout above: format_version == 1, both groups and their
  // datasets present, 1-D, integer types as specified, offsets of length num_examples + 1.
  explicit ShardFile(std::string path);
  ~ShardFile();
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;

  const std::string& path() const;
  int64_t num_examples() const;
  int64_t vocab_size() const;
  const std::string& tokenizer_sha256() const;
  int64_t num_tokens(Side side) const;  // length of /<side>/tokens

  // offsets[first .. first + count) of one side into out[0 .. count).
  void read_offsets(Side side, int64_t first, int64_t count, int64_t* out) const;
  // tokens[first .. first + count) of one side, as int32, each checked to lie in [0, vocab_size).
  void read_tokens(Side side, int64_t first, int64_t count, int32_t* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tfm
