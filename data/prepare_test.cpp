// `tfm prepare` end to end in this process: what it writes, how it re-runs, and every kind of bad
// input the brief lists — each must give a message naming the file and line (or option) and a
// non-zero exit status, never a crash.
#include "data/prepare.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "data/manifest.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/test_helpers.h"
#include "data/tokenizer.h"

namespace tfm {
namespace {

using namespace testing_data;
namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// base + extra, where an option in extra that base already has replaces base's value.
std::vector<std::string> merge(std::vector<std::string> base, const std::vector<std::string>& extra) {
  for (size_t i = 0; i < extra.size(); ++i) {
    bool has_value = i + 1 < extra.size() && extra[i + 1].rfind("--", 0) != 0;
    auto it = std::find(base.begin(), base.end(), extra[i]);
    if (it != base.end() && has_value && it + 1 != base.end()) {
      *(it + 1) = extra[++i];
      continue;
    }
    base.push_back(extra[i]);
    if (has_value) base.push_back(extra[++i]);
  }
  return base;
}

// A small parallel corpus in a temp dir: train 300 pairs, valid 40, test 30.
struct Corpus {
  TempDir dir;
  std::vector<std::string> src = sentences(300, 1), tgt = sentences(300, 2);
  Corpus() {
    write_lines(dir / "train.src", src);
    write_lines(dir / "train.tgt", tgt);
    write_lines(dir / "valid.src", sentences(40, 3));
    write_lines(dir / "valid.tgt", sentences(40, 4));
    write_lines(dir / "test.src", sentences(30, 5));
    write_lines(dir / "test.tgt", sentences(30, 6));
  }
  std::vector<std::string> args(const std::string& out, std::vector<std::string> extra = {}) const {
    return merge({"--src", dir / "train.src", "--tgt", dir / "train.tgt", "--out", out, "--vocab-size", "60",
                  "--threads", "2", "--quiet"},
                 extra);
  }
  std::vector<std::string> all_splits(const std::string& out, std::vector<std::string> extra = {}) const {
    return merge(args(out, {"--valid-src", dir / "valid.src", "--valid-tgt", dir / "valid.tgt", "--test-src",
                            dir / "test.src", "--test-tgt", dir / "test.tgt"}),
                 extra);
  }
};

// Decodes every example of a split, shard by shard, in stored order.
std::vector<std::pair<std::string, std::string>> decode_split(const std::string& dir, const std::string& split) {
  Manifest m = Manifest::load(dir);
  Tokenizer tok = Tokenizer::load(dir + "/" + m.tokenizer_file);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : m.split(split).shards) {
    ShardFile f(dir + "/" + e.name);
    std::vector<int64_t> off[2];
    std::vector<int32_t> tok_ids[2];
    for (int s = 0; s < 2; ++s) {
      off[s].resize(size_t(f.num_examples() + 1));
      f.read_offsets(Side(s), 0, f.num_examples() + 1, off[s].data());
      tok_ids[s].resize(size_t(f.num_tokens(Side(s))));
      f.read_tokens(Side(s), 0, f.num_tokens(Side(s)), tok_ids[s].data());
    }
    for (int64_t i = 0; i < f.num_examples(); ++i) {
      std::string text[2];
      for (int s = 0; s < 2; ++s) {
        text[s] = tok.decode(tok_ids[s].data() + off[s][size_t(i)], off[s][size_t(i) + 1] - off[s][size_t(i)]);
      }
      out.emplace_back(text[0], text[1]);
    }
  }
  return out;
}

TEST(Prepare, WritesShardsTokenizerAndManifest) {
  Corpus c;
  TempDir out;
  CommandResult r = run_prepare(c.all_splits(out.str(), {"--shards", "3"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "train")) << r.out;

  Manifest m = Manifest::load(out.str());
  EXPECT_EQ(m.format_version, 1);
  EXPECT_EQ(m.vocab_size, 60);
  EXPECT_EQ(m.token_dtype, "uint16");
  EXPECT_EQ(sha256_file(out / m.tokenizer_file), m.tokenizer_sha256);
  ASSERT_EQ(m.splits.size(), 3u);
  EXPECT_EQ(m.splits[0].first, "train");
  EXPECT_EQ(m.split("train").num_examples(), 300);
  EXPECT_EQ(m.split("valid").num_examples(), 40);
  EXPECT_EQ(m.split("test").num_examples(), 30);
  for (const auto& [name, split] : m.splits) {
    ASSERT_EQ(split.shards.size(), 3u) << name;
    for (const auto& e : split.shards) {
      EXPECT_EQ(sha256_file(out / e.name), e.sha256) << e.name;
      ShardFile f(out / e.name);
      EXPECT_EQ(f.num_examples(), e.num_examples);
      EXPECT_GT(e.num_examples, 0);
      EXPECT_EQ(f.vocab_size(), 60);
      EXPECT_EQ(f.tokenizer_sha256(), m.tokenizer_sha256);
      EXPECT_EQ(f.num_tokens(Side::src), e.src_tokens);
      EXPECT_EQ(f.num_tokens(Side::tgt), e.tgt_tokens);
    }
  }
  // File order is kept across shards, and decoding gives the (already normalised) text back.
  auto train = decode_split(out.str(), "train");
  ASSERT_EQ(train.size(), 300u);
  for (size_t i = 0; i < train.size(); ++i) {
    EXPECT_EQ(train[i].first, c.src[i]) << i;
    EXPECT_EQ(train[i].second, c.tgt[i]) << i;
  }
  // Nothing temporary is left behind.
  for (const auto& e : fs::directory_iterator(out.str())) EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}

TEST(Prepare, SameInputsGiveSameBytesAndRerunIsANoOp) {
  Corpus c;
  TempDir a, b;
  ASSERT_EQ(run_prepare(c.all_splits(a.str())).code, 0);
  ASSERT_EQ(run_prepare(c.all_splits(b.str(), {"--threads", "1"})).code, 0);  // thread count does not matter
  Manifest ma = Manifest::load(a.str()), mb = Manifest::load(b.str());
  EXPECT_EQ(ma.tokenizer_sha256, mb.tokenizer_sha256);
  EXPECT_EQ(ma.to_json().dump(), mb.to_json().dump());

  std::string before = read_text(a / "manifest.json");
  auto shard_time = fs::last_write_time(a / ma.split("train").shards[0].name);
  CommandResult again = run_prepare(c.all_splits(a.str()));
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(contains(again.out + again.err, "nothing to do")) << again.out << again.err;
  EXPECT_EQ(read_text(a / "manifest.json"), before);
  EXPECT_EQ(fs::last_write_time(a / ma.split("train").shards[0].name), shard_time);
}

TEST(Prepare, AnotherDatasetInOutIsRefusedUnlessForce) {
  Corpus c;
  TempDir out;
  ASSERT_EQ(run_prepare(c.args(out.str(), {"--shards", "3"})).code, 0);
  CommandResult r = run_prepare(c.args(out.str(), {"--shards", "2", "--vocab-size", "70"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, out.str())) << r.err;
  EXPECT_TRUE(contains(r.err, "--force")) << r.err;
  EXPECT_EQ(Manifest::load(out.str()).vocab_size, 60);  // untouched

  r = run_prepare(c.args(out.str(), {"--shards", "2", "--vocab-size", "70", "--force"}));
  ASSERT_EQ(r.code, 0) << r.err;
  Manifest m = Manifest::load(out.str());
  EXPECT_EQ(m.vocab_size, 70);
  int shards = 0;
  for (const auto& e : fs::directory_iterator(out.str())) shards += e.path().extension() == ".h5";
  EXPECT_EQ(shards, 2);  // the old three are gone
}

TEST(Prepare, UnfinishedDatasetIsRefused) {
  Corpus c;
  TempDir out;
  write_text(out / "train-00000-of-00002.h5", "left over from a crash");
  CommandResult r = run_prepare(c.args(out.str()));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, "unfinished")) << r.err;
  EXPECT_EQ(run_prepare(c.args(out.str(), {"--force"})).code, 0);
}

TEST(Prepare, MismatchedLineCountsNameBothFiles) {
  Corpus c;
  TempDir out;
  write_lines(c.dir / "short.tgt", sentences(299, 2));
  auto args = c.args(out.str());
  args[3] = c.dir / "short.tgt";
  CommandResult r = run_prepare(args);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, c.dir / "train.src")) << r.err;
  EXPECT_TRUE(contains(r.err, c.dir / "short.tgt")) << r.err;
  EXPECT_TRUE(contains(r.err, "300 lines")) << r.err;
  EXPECT_TRUE(contains(r.err, "299 lines")) << r.err;
  EXPECT_FALSE(fs::exists(out / "manifest.json"));
}

TEST(Prepare, InvalidUtf8NamesFileAndLine) {
  Corpus c;
  TempDir out;
  std::vector<std::string> tgt = c.tgt;
  tgt[3] = "kalo \xC3\x28 mine";  // a 2-byte lead followed by a non-continuation byte
  write_lines(c.dir / "train.tgt", tgt);
  CommandResult r = run_prepare(c.args(out.str()));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, c.dir / "train.tgt:4")) << r.err;
  EXPECT_TRUE(contains(r.err, "invalid UTF-8")) << r.err;
}

TEST(Prepare, EmptySidesAreDroppedListedAndFatalUnderStrict) {
  Corpus c;
  std::vector<std::string> src = c.src, tgt = c.tgt;
  src[2] = "";
  tgt[6] = "  \t ";
  write_lines(c.dir / "train.src", src);
  write_lines(c.dir / "train.tgt", tgt);
  TempDir out, strict_out;
  CommandResult r = run_prepare(c.args(out.str()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, c.dir / "train.src:3")) << r.err;
  EXPECT_TRUE(contains(r.err, c.dir / "train.tgt:7")) << r.err;
  Manifest m = Manifest::load(out.str());
  EXPECT_EQ(m.split("train").num_examples(), 298);
  EXPECT_EQ(m.prepare.at("dropped", "").at("train", "").at("empty_side", "").as_int(""), 2);

  r = run_prepare(c.args(strict_out.str(), {"--strict"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, c.dir / "train.src:3")) << r.err;
  EXPECT_TRUE(contains(r.err, "--strict")) << r.err;
  EXPECT_FALSE(fs::exists(strict_out / "manifest.json"));
}

TEST(Prepare, MaxLenDropsLongTrainPairsButKeepsValid) {
  Corpus c;
  std::vector<std::string> src = c.src;
  std::string long_line;
  for (int i = 0; i < 80; ++i) long_line += "kaloministe ";
  for (int i : {10, 20, 30, 40, 50}) src[size_t(i)] = long_line;
  write_lines(c.dir / "train.src", src);
  write_lines(c.dir / "valid.src", {long_line, "kalo"});
  write_lines(c.dir / "valid.tgt", {"mine", "sa"});
  TempDir out;
  CommandResult r = run_prepare(c.args(out.str(), {"--max-len", "40", "--valid-src", c.dir / "valid.src",
                                                   "--valid-tgt", c.dir / "valid.tgt"}));
  ASSERT_EQ(r.code, 0) << r.err;
  Manifest m = Manifest::load(out.str());
  EXPECT_EQ(m.split("train").num_examples(), 295);
  EXPECT_EQ(m.prepare.at("dropped", "").at("train", "").at("over_max_len", "").as_int(""), 5);
  EXPECT_EQ(m.split("valid").num_examples(), 2);
}

TEST(Prepare, MissingFileIsNamed) {
  Corpus c;
  TempDir out;
  auto args = c.args(out.str());
  args[1] = c.dir / "nowhere.src";
  CommandResult r = run_prepare(args);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, c.dir / "nowhere.src")) << r.err;
}

TEST(Prepare, TsvInputAndMalformedTsvLine) {
  Corpus c;
  std::vector<std::string> lines;
  for (size_t i = 0; i < c.src.size(); ++i) lines.push_back(c.src[i] + "\t" + c.tgt[i]);
  write_lines(c.dir / "train.tsv", lines);
  TempDir out, out_tsv;
  ASSERT_EQ(run_prepare(c.args(out.str())).code, 0);
  CommandResult r = run_prepare({"--tsv", c.dir / "train.tsv", "--out", out_tsv.str(), "--vocab-size", "60", "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  // Same pairs, so the same dataset as from two files.
  EXPECT_EQ(Manifest::load(out.str()).split("train").shards[0].sha256,
            Manifest::load(out_tsv.str()).split("train").shards[0].sha256);

  lines[4] = "no tab on this line";
  write_lines(c.dir / "bad.tsv", lines);
  TempDir out_bad;
  r = run_prepare({"--tsv", c.dir / "bad.tsv", "--out", out_bad.str(), "--vocab-size", "60", "--quiet"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, c.dir / "bad.tsv:5")) << r.err;
}

TEST(Prepare, ExistingSentencePieceModelIsUsed) {
  Corpus c;
  TempDir a, b;
  ASSERT_EQ(run_prepare(c.args(a.str())).code, 0);
  CommandResult r = run_prepare({"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", b.str(),
                                 "--spm-model", a / "spm.model", "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  Manifest ma = Manifest::load(a.str()), mb = Manifest::load(b.str());
  EXPECT_EQ(ma.tokenizer_sha256, mb.tokenizer_sha256);
  EXPECT_EQ(ma.split("train").shards[0].sha256, mb.split("train").shards[0].sha256);
  // Rebuilding a dataset from the model inside it: --force must not delete the model first.
  r = run_prepare({"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", a.str(), "--spm-model",
                   a / "spm.model", "--shards", "2", "--force", "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Manifest::load(a.str()).tokenizer_sha256, ma.tokenizer_sha256);
}

TEST(Prepare, ATrainSplitWithNothingLeftIsAnError) {
  Corpus c;
  TempDir out;
  CommandResult r = run_prepare(c.args(out.str(), {"--max-len", "1"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, "--max-len")) << r.err;
  EXPECT_FALSE(fs::exists(out / "manifest.json"));
}

TEST(Prepare, CommandLineMistakesNameTheOptionAndExit2) {
  Corpus c;
  TempDir out;
  const std::string o = out.str();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--bogus"}, "bogus"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--vocab-size", "abc"}, "vocab-size"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--vocab-size", "3"}, "--vocab-size"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--model-type", "word"}, "--model-type"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--shards", "0"}, "--shards"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--max-len", "-1"}, "--max-len"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--threads", "0"}, "--threads"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--character-coverage", "2"},
       "--character-coverage"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt"}, "--out"},
      {{"--src", c.dir / "train.src", "--out", o}, "--tgt"},
      {{"--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o, "--valid-src", c.dir / "valid.src"},
       "--valid-tgt"},
      {{"--tsv", c.dir / "x.tsv", "--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o}, "--tsv"},
      {{"--demo", "--src", c.dir / "train.src", "--tgt", c.dir / "train.tgt", "--out", o}, "--demo"},
      {{"--out", o}, "--src"},
  };
  for (const auto& [args, option] : cases) {
    CommandResult r = run_prepare(args);
    EXPECT_EQ(r.code, 2) << option << ": " << r.err;
    EXPECT_TRUE(contains(r.err, option)) << option << ": " << r.err;
  }
  EXPECT_FALSE(fs::exists(out / "manifest.json"));
}

TEST(Prepare, HelpShowsEveryOptionWithItsDefault) {
  CommandResult r = run_prepare({"--help"});
  EXPECT_EQ(r.code, 0);
  for (const char* text : {"--src", "--tgt", "--tsv", "--out", "--vocab-size", "(=8000)", "--model-type", "--spm-model",
                           "--shards", "--max-len", "(=256)", "--valid-src", "--test-tgt", "--strict", "--force",
                           "--threads", "--demo"}) {
    EXPECT_TRUE(contains(r.out, text)) << text;
  }
}

TEST(Prepare, DemoCorpusEndToEnd) {
  TempDir out;
  CommandResult r = run_prepare({"--demo", "--out", out.str(), "--quiet", "--threads", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  Manifest m = Manifest::load(out.str());
  EXPECT_EQ(m.vocab_size, 320);
  auto dropped = [&](const char* split) {
    const Json& d = m.prepare.at("dropped", "").at(split, "");
    return d.at("empty_side", "").as_int("") + d.at("over_max_len", "").as_int("");
  };
  EXPECT_EQ(m.split("train").num_examples() + dropped("train"), 50000);
  EXPECT_EQ(m.split("valid").num_examples(), 1000);
  EXPECT_EQ(m.split("test").num_examples(), 1000);
  auto valid = decode_split(out.str(), "valid");
  std::vector<std::string> de;
  {
    std::string all = read_text(out / "raw/valid.de");
    size_t start = 0;
    for (size_t nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) de.push_back(all.substr(start, nl - start));
  }
  ASSERT_EQ(de.size(), 1000u);
  for (size_t i = 0; i < 1000; ++i) EXPECT_EQ(valid[i].second, de[i]) << i;  // German decodes exactly

  CommandResult again = run_prepare({"--demo", "--out", out.str(), "--quiet"});
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(contains(again.out + again.err, "nothing to do"));
}

}  // namespace
}  // namespace tfm
