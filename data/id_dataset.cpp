#include "data/id_dataset.h"

#include <filesystem>

#include "data/manifest.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "kernels/core/check.h"

namespace fs = std::filesystem;

namespace tfm {

void write_id_dataset(const std::string& dir, const Tokenizer& tok, const std::vector<IdSplitSpec>& splits) {
  fs::create_directories(dir);
  Manifest m;
  m.vocab_size = tok.vocab_size();
  m.token_dtype = tokens_fit_uint16(m.vocab_size) ? "uint16" : "int32";
  m.tokenizer_sha256 = tok.sha256();
  tok.save((fs::path(dir) / m.tokenizer_file).string());
  std::vector<int32_t> src, tgt;
  for (const IdSplitSpec& spec : splits) {
    TFM_CHECK(spec.num_shards >= 1 && spec.num_examples >= 0, "write_id_dataset: split ", spec.name);
    SplitEntry entry;
    for (int64_t k = 0; k < spec.num_shards; ++k) {
      std::string name = shard_file_name(spec.name, k, spec.num_shards);
      std::string path = (fs::path(dir) / name).string();
      ShardWriter w(path, m.vocab_size, m.tokenizer_sha256);
      for (int64_t i = k * spec.num_examples / spec.num_shards; i < (k + 1) * spec.num_examples / spec.num_shards; ++i) {
        src.clear();
        tgt.clear();
        spec.example(i, src, tgt);
        w.add(src, tgt);
      }
      ShardStats st = w.finish();
      entry.shards.push_back({name, st.num_examples, st.src_tokens, st.tgt_tokens, sha256_file(path)});
    }
    m.splits.emplace_back(spec.name, std::move(entry));
  }
  m.save(dir);
}

}  // namespace tfm
