// The manifest of a prepared dataset: DIR/manifest.json, written last and atomically by
// `tfm prepare`, so a directory with a manifest is complete. It names the tokenizer file and its
// SHA-256 and, per split (train, valid, test), the shards in order with their example and token
// counts and SHA-256. Example:
//   { "format_version": 1, "vocab_size": 8000, "token_dtype": "uint16",
//     "tokenizer": { "file": "spm.model", "sha256": "…" },
//     "fingerprint": "…",            // SHA-256 of prepare's inputs and options (re-run detection)
//     "splits": { "train": { "num_examples": …, "src_tokens": …, "tgt_tokens": …,
//                            "shards": [ { "name": "train-00000-of-00004.h5", "num_examples": …,
//                                          "src_tokens": …, "tgt_tokens": …, "sha256": "…" }, … ] },
//                 "valid": { … } },
//     "prepare": { … } }             // informational: options and counts of dropped pairs
// Token counts are stored ids, without BOS/EOS.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/json.h"

namespace tfm {

struct ShardEntry {
  std::string name;  // file name inside the dataset directory
  int64_t num_examples = 0;
  int64_t src_tokens = 0;
  int64_t tgt_tokens = 0;
  std::string sha256;
};

struct SplitEntry {
  std::vector<ShardEntry> shards;
  int64_t num_examples() const;
  int64_t src_tokens() const;
  int64_t tgt_tokens() const;
};

struct Manifest {
  static constexpr const char* kFileName = "manifest.json";

  int64_t format_version = 1;
  int64_t vocab_size = 0;
  std::string token_dtype;  // "uint16" or "int32"
  std::string tokenizer_file = "spm.model";
  std::string tokenizer_sha256;
  std::string fingerprint;
  std::vector<std::pair<std::string, SplitEntry>> splits;  // train, valid, test, as present
  Json prepare = Json::object();

  const SplitEntry* find_split(const std::string& name) const;
  // Throws naming the split and the ones the dataset has.
  const SplitEntry& split(const std::string& name) const;

  Json to_json() const;
  static Manifest from_json(const Json& json, const std::string& where);
  // Reads DIR/manifest.json and checks format_version; errors name the file.
  static Manifest load(const std::string& dir);
  void save(const std::string& dir) const;  // atomically (temporary name, fsync, rename)
};

}  // namespace tfm
