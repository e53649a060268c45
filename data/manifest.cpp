#include "data/manifest.h"

#include <filesystem>

#include "data/files.h"
#include "data/shard.h"
#include "kernels/core/check.h"

namespace tfm {

int64_t SplitEntry::num_examples() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.num_examples;
  return n;
}
int64_t SplitEntry::src_tokens() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.src_tokens;
  return n;
}
int64_t SplitEntry::tgt_tokens() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.tgt_tokens;
  return n;
}

const SplitEntry* Manifest::find_split(const std::string& name) const {
  for (const auto& [n, s] : splits) {
    if (n == name) return &s;
  }
  return nullptr;
}

const SplitEntry& Manifest::split(const std::string& name) const {
  if (const SplitEntry* s = find_split(name)) return *s;
  std::string have;
  for (const auto& [n, s] : splits) have += (have.empty() ? "" : ", ") + n;
  fail(cat("the dataset has no split '", name, "' (it has: ", have.empty() ? "none" : have, ")"));
}

Json Manifest::to_json() const {
  Json j = Json::object();
  j.set("format_version", format_version);
  j.set("vocab_size", vocab_size);
  j.set("token_dtype", token_dtype);
  Json tok = Json::object();
  tok.set("file", tokenizer_file);
  tok.set("sha256", tokenizer_sha256);
  j.set("tokenizer", tok);
  j.set("fingerprint", fingerprint);
  Json sp = Json::object();
  for (const auto& [name, split] : splits) {
    Json s = Json::object();
    s.set("num_examples", split.num_examples());
    s.set("src_tokens", split.src_tokens());
    s.set("tgt_tokens", split.tgt_tokens());
    Json shards = Json::array();
    for (const auto& e : split.shards) {
      Json o = Json::object();
      o.set("name", e.name);
      o.set("num_examples", e.num_examples);
      o.set("src_tokens", e.src_tokens);
      o.set("tgt_tokens", e.tgt_tokens);
      o.set("sha256", e.sha256);
      shards.push_back(o);
    }
    s.set("shards", shards);
    sp.set(name, s);
  }
  j.set("splits", sp);
  j.set("prepare", prepare);
  return j;
}

Manifest Manifest::from_json(const Json& j, const std::string& where) {
  Manifest m;
  m.format_version = j.at("format_version", where).as_int(where + ": format_version");
  if (m.format_version != kShardFormatVersion) {
    fail(cat(where, ": format_version is ", m.format_version, "; this tfm reads format_version ",
             kShardFormatVersion));
  }
  m.vocab_size = j.at("vocab_size", where).as_int(where + ": vocab_size");
  if (m.vocab_size <= 0) fail(cat(where, ": vocab_size must be positive, found ", m.vocab_size));
  m.token_dtype = j.at("token_dtype", where).as_string(where + ": token_dtype");
  const Json& tok = j.at("tokenizer", where);
  m.tokenizer_file = tok.at("file", where + ": tokenizer").as_string(where + ": tokenizer.file");
  m.tokenizer_sha256 = tok.at("sha256", where + ": tokenizer").as_string(where + ": tokenizer.sha256");
  if (j.has("fingerprint")) m.fingerprint = j.at("fingerprint", where).as_string(where + ": fingerprint");
  const Json& sp = j.at("splits", where);
  if (!sp.is_object()) fail(cat(where, ": splits: expected an object"));
  for (const auto& [name, s] : sp.members()) {
    std::string w = cat(where, ": splits.", name);
    SplitEntry split;
    const auto& shards = s.at("shards", w).as_array(w + ".shards");
    for (size_t k = 0; k < shards.size(); ++k) {
      std::string ws = cat(w, ".shards[", k, "]");
      const Json& o = shards[k];
      ShardEntry e;
      e.name = o.at("name", ws).as_string(ws + ".name");
      if (e.name.empty() || e.name.find('/') != std::string::npos || e.name == "..") {
        fail(cat(ws, ".name: '", e.name, "' is not a plain file name"));
      }
      e.num_examples = o.at("num_examples", ws).as_int(ws + ".num_examples");
      e.src_tokens = o.at("src_tokens", ws).as_int(ws + ".src_tokens");
      e.tgt_tokens = o.at("tgt_tokens", ws).as_int(ws + ".tgt_tokens");
      e.sha256 = o.at("sha256", ws).as_string(ws + ".sha256");
      if (e.num_examples < 0 || e.src_tokens < 0 || e.tgt_tokens < 0) fail(cat(ws, ": negative count"));
      split.shards.push_back(e);
    }
    m.splits.emplace_back(name, std::move(split));
  }
  if (j.has("prepare")) m.prepare = j.at("prepare", where);
  return m;
}

Manifest Manifest::load(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / kFileName).string();
  if (!std::filesystem::exists(path)) {
    fail(cat(dir, " is not a prepared dataset: ", path, " is missing (run tfm prepare first)"));
  }
  return from_json(Json::parse(read_file(path), path), path);
}

void Manifest::save(const std::string& dir) const {
  write_file_atomic((std::filesystem::path(dir) / kFileName).string(), to_json().dump());
}

}  // namespace tfm
