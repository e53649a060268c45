// The streaming reader: exactly-once epochs for any world size, exact resume (also across epochs
// and across world sizes), deterministic shuffles, token budgets, the text round trip, and
// refusal of changed or corrupt datasets with a message naming the shard.
#include "data/reader.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "data/id_dataset.h"
#include "data/manifest.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/test_helpers.h"
#include "kernels/core/check.h"

namespace tfm {
namespace {

using namespace testing_data;
namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Synthetic example i: lengths vary (target tracks source, as in real translation), ids encode i,
// and example 17 is longer than the whole token budget used below.
constexpr int64_t kLongExample = 17;
std::vector<int32_t> src_of(int64_t i) {
  int64_t n = i == kLongExample ? 300 : 1 + (i * 7919) % 37;
  std::vector<int32_t> v;
  for (int64_t k = 0; k < n; ++k) v.push_back(int32_t(4 + (i + 3 * k) % 60));
  return v;
}
std::vector<int32_t> tgt_of(int64_t i) {
  int64_t n = 1 + (i * 7919) % 37 + i % 5;
  std::vector<int32_t> v;
  for (int64_t k = 0; k < n; ++k) v.push_back(int32_t(4 + (i * 5 + k) % 60));
  return v;
}

constexpr int64_t kTrain = 2000, kValid = 150;

// One dataset per test process (written once, read-only afterwards).
const std::string& dataset() {
  static TempDir dir;
  static bool written = [] {
    write_id_dataset(dir.str(), small_tokenizer(),
                     {{"train", kTrain, 3, [](int64_t i, auto& s, auto& t) { s = src_of(i); t = tgt_of(i); }},
                      {"valid", kValid, 2, [](int64_t i, auto& s, auto& t) { s = src_of(i + 5000); t = tgt_of(i + 5000); }}});
    return true;
  }();
  (void)written;
  static std::string path = dir.str();
  return path;
}

ReaderOptions options(int rank = 0, int world = 1, uint64_t seed = 1) {
  ReaderOptions o;
  o.batch_tokens = 256;
  o.block_examples = 64;
  o.window_blocks = 4;
  o.prefetch = 4;
  o.rank = rank;
  o.world = world;
  o.seed = seed;
  return o;
}

struct Got {
  Batch batch;
  BatchInfo info;
};

Got take(DatasetReader& r) {
  Got g;
  EXPECT_TRUE(r.next(g.batch, &g.info));
  return g;
}

void expect_same(const Got& a, const Got& b, const std::string& what) {
  EXPECT_EQ(a.info.epoch, b.info.epoch) << what;
  EXPECT_EQ(a.info.index, b.info.index) << what;
  EXPECT_EQ(a.info.examples, b.info.examples) << what;
  EXPECT_EQ(a.batch.src, b.batch.src) << what;
  EXPECT_EQ(a.batch.tgt_in, b.batch.tgt_in) << what;
  EXPECT_EQ(a.batch.tgt_out, b.batch.tgt_out) << what;
}

// Every row holds the tokens of the example BatchInfo names, framed as data/batch.h says.
void expect_rows_match(const Got& g, int64_t example_offset = 0) {
  const Batch& b = g.batch;
  ASSERT_EQ(int64_t(g.info.examples.size()), b.size);
  for (int64_t r = 0; r < b.size; ++r) {
    Batch one = make_batch({src_of(g.info.examples[size_t(r)] + example_offset)},
                           {tgt_of(g.info.examples[size_t(r)] + example_offset)});
    std::vector<int32_t> src(b.src.begin() + r * b.src_len, b.src.begin() + r * b.src_len + one.src_len);
    std::vector<int32_t> out(b.tgt_out.begin() + r * b.tgt_len, b.tgt_out.begin() + r * b.tgt_len + one.tgt_len);
    EXPECT_EQ(src, one.src) << "row " << r << " example " << g.info.examples[size_t(r)];
    EXPECT_EQ(out, one.tgt_out) << "row " << r;
    EXPECT_EQ(b.src_lengths[size_t(r)], one.src_lengths[0]);
    EXPECT_EQ(b.tgt_lengths[size_t(r)], one.tgt_lengths[0]);
  }
}

TEST(Reader, EveryPairExactlyOncePerEpochForWorldSizes1To4) {
  for (int world = 1; world <= 4; ++world) {
    std::vector<std::unique_ptr<DatasetReader>> ranks;
    for (int r = 0; r < world; ++r) ranks.push_back(std::make_unique<DatasetReader>(dataset(), options(r, world)));
    const int64_t G = ranks[0]->batches_in_epoch(0);
    std::map<int64_t, int> example_count;
    std::set<int64_t> indices;
    bool all_past = false;
    for (int64_t step = 0; !all_past; ++step) {
      all_past = true;
      for (int r = 0; r < world; ++r) {
        Got g = take(*ranks[size_t(r)]);
        // Rank r takes the r-th global batch of each step.
        int64_t global = g.info.epoch * G + g.info.index;
        EXPECT_EQ(global, step * world + r) << "world " << world;
        if (g.info.epoch == 0) {
          for (int64_t e : g.info.examples) ++example_count[e];
          indices.insert(g.info.index);
          expect_rows_match(g);
          all_past = false;
        }
      }
      // After each step every rank reports the same position: where the next step starts.
      for (int r = 1; r < world; ++r) EXPECT_EQ(ranks[size_t(r)]->position(), ranks[0]->position());
      EXPECT_EQ(ranks[0]->position().epoch * G + ranks[0]->position().batch, (step + 1) * world);
    }
    EXPECT_EQ(int64_t(example_count.size()), kTrain) << "world " << world;
    for (const auto& [e, n] : example_count) EXPECT_EQ(n, 1) << "example " << e << " world " << world;
    EXPECT_EQ(int64_t(indices.size()), G);
  }
}

TEST(Reader, TokenBudgetHoldsAndAnOverlongPairGetsItsOwnBatch) {
  DatasetReader r(dataset(), options());
  const int64_t G = r.batches_in_epoch(0);
  bool saw_long = false;
  int64_t real = 0, padded = 0;
  for (int64_t i = 0; i < G; ++i) {
    Got g = take(r);
    const Batch& b = g.batch;
    int64_t cost = b.size * b.src_len + b.size * b.tgt_len;
    if (b.size > 1) {
      EXPECT_LE(cost, 256) << "batch " << i;
    }
    if (std::find(g.info.examples.begin(), g.info.examples.end(), kLongExample) != g.info.examples.end()) {
      EXPECT_EQ(b.size, 1);
      saw_long = true;
    }
    real += b.src_tokens() + b.tgt_tokens();
    padded += cost;
  }
  EXPECT_TRUE(saw_long);
  // Length-sorted windows keep padding small (file order would waste about a third).
  EXPECT_GT(double(real) / double(padded), 0.85);
}

TEST(Reader, ResumeYieldsTheSameNext100BatchesAlsoAcrossAnEpochBoundary) {
  DatasetReader probe(dataset(), options());
  const int64_t G = probe.batches_in_epoch(0);
  ASSERT_GT(G, 200);
  for (int world : {1, 2}) {
    for (int64_t steps : {int64_t(37), G / world - 20}) {  // mid-epoch, and 100 batches that cross into epoch 1
      std::vector<std::unique_ptr<DatasetReader>> run;
      for (int r = 0; r < world; ++r) run.push_back(std::make_unique<DatasetReader>(dataset(), options(r, world)));
      for (int64_t s = 0; s < steps; ++s) {
        for (auto& reader : run) take(*reader);
      }
      ReaderPosition saved = ReaderPosition::from_string(run[0]->position().to_string());
      std::vector<std::unique_ptr<DatasetReader>> resumed;
      for (int r = 0; r < world; ++r) resumed.push_back(std::make_unique<DatasetReader>(dataset(), options(r, world), saved));
      std::set<int64_t> epochs;
      for (int64_t k = 0; k < 100; ++k) {
        int r = int(k % world);
        Got a = take(*run[size_t(r)]), b = take(*resumed[size_t(r)]);
        expect_same(a, b, cat("world ", world, " steps ", steps, " batch ", k));
        epochs.insert(a.info.epoch);
        if (r == world - 1) {
          EXPECT_EQ(run[0]->position(), resumed[0]->position());
        }
      }
      if (steps > 37) {
        EXPECT_EQ(epochs, (std::set<int64_t>{0, 1})) << "should cross the epoch boundary";
      }
    }
  }
}

TEST(Reader, PositionSavedAtWorldSize2ContinuesTheSameGlobalSequenceAt1And4) {
  const int64_t steps = 53;
  // The global sequence from one reader at world size 1.
  DatasetReader single(dataset(), options());
  std::vector<Got> global;
  for (int64_t k = 0; k < 2 * steps + 120; ++k) global.push_back(take(single));

  DatasetReader r0(dataset(), options(0, 2)), r1(dataset(), options(1, 2));
  for (int64_t s = 0; s < steps; ++s) {
    expect_same(take(r0), global[size_t(2 * s)], "rank 0");
    expect_same(take(r1), global[size_t(2 * s + 1)], "rank 1");
  }
  const ReaderPosition saved = r0.position();
  ASSERT_EQ(saved, r1.position());

  DatasetReader one(dataset(), options(0, 1), saved);
  for (int64_t k = 0; k < 60; ++k) expect_same(take(one), global[size_t(2 * steps + k)], cat("world 1 batch ", k));

  std::vector<std::unique_ptr<DatasetReader>> four;
  for (int r = 0; r < 4; ++r) four.push_back(std::make_unique<DatasetReader>(dataset(), options(r, 4), saved));
  for (int64_t s = 0; s < 30; ++s) {
    for (int r = 0; r < 4; ++r) {
      expect_same(take(*four[size_t(r)]), global[size_t(2 * steps + 4 * s + r)], cat("world 4 step ", s, " rank ", r));
    }
  }
}

TEST(Reader, ShufflesAreDeterministicPerSeedAndEpoch) {
  auto epoch_order = [](uint64_t seed, int64_t epoch) {
    DatasetReader r(dataset(), options(0, 1, seed));
    std::vector<std::vector<int64_t>> order;
    Batch b;
    BatchInfo info;
    while (r.next(b, &info) && info.epoch <= epoch) {
      if (info.epoch == epoch) order.push_back(info.examples);
    }
    return order;
  };
  auto e0 = epoch_order(1, 0);
  EXPECT_EQ(e0, epoch_order(1, 0));
  EXPECT_NE(e0, epoch_order(1, 1));
  EXPECT_NE(e0, epoch_order(2, 0));
  // Not merely rotated or batched differently: the first batches hold different examples.
  EXPECT_NE(e0.front(), epoch_order(1, 1).front());
}

TEST(Reader, SequentialPassVisitsTheSplitOnceInFileOrder) {
  ReaderOptions o = options();
  o.split = "valid";
  o.shuffle = false;
  DatasetReader r(dataset(), o);
  std::vector<int64_t> seen;
  Got g;
  int64_t index = 0;
  while (r.next(g.batch, &g.info)) {
    EXPECT_EQ(g.info.index, index++);
    seen.insert(seen.end(), g.info.examples.begin(), g.info.examples.end());
    expect_rows_match(g, 5000);
  }
  std::vector<int64_t> want(kValid);
  for (int64_t i = 0; i < kValid; ++i) want[size_t(i)] = i;
  EXPECT_EQ(seen, want);
  EXPECT_FALSE(r.next(g.batch, &g.info));  // stays finished
  DatasetReader after(dataset(), o, r.position());
  EXPECT_FALSE(after.next(g.batch, &g.info));

  // Across 3 ranks: batches r, r+3, …, together the whole split once.
  std::multiset<int64_t> all;
  for (int rank = 0; rank < 3; ++rank) {
    ReaderOptions ro = o;
    ro.rank = rank;
    ro.world = 3;
    DatasetReader rr(dataset(), ro);
    while (rr.next(g.batch, &g.info)) {
      EXPECT_EQ(g.info.index % 3, rank);
      all.insert(g.info.examples.begin(), g.info.examples.end());
    }
  }
  EXPECT_EQ(all, std::multiset<int64_t>(want.begin(), want.end()));
}

TEST(Reader, PositionsSerialiseAndForeignPositionsAreRefused) {
  ReaderPosition p{3, 141, 5, 9, 271828};
  EXPECT_EQ(ReaderPosition::from_string(p.to_string()), p);
  EXPECT_EQ(ReaderPosition::from_ints(p.to_ints()), p);
  EXPECT_THROW(ReaderPosition::from_string("epoch=1 batch=2"), Error);
  EXPECT_THROW(ReaderPosition::from_string("epoch=1 batch=2 window=0 window_batch=0 plan=5 extra"), Error);
  EXPECT_THROW(ReaderPosition::from_string("epoch=-1 batch=2 window=0 window_batch=0 plan=5"), Error);

  DatasetReader r(dataset(), options());
  take(r);
  ReaderPosition saved = r.position();
  EXPECT_NE(saved.plan, 0);
  try {  // another seed is another batch plan
    DatasetReader other(dataset(), options(0, 1, 2), saved);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "different dataset, split, seed, batch_tokens")) << e.what();
  }
  ReaderOptions o = options();
  o.batch_tokens = 512;
  EXPECT_THROW(DatasetReader(dataset(), o, saved), Error);
  ReaderPosition bad = saved;
  bad.window = 1000;
  EXPECT_THROW(DatasetReader(dataset(), options(), bad), Error);
}

// --------------------------------------------------------------- text round trip (prepare → reader)

TEST(Reader, TextRoundTripThroughPrepareDecodesToTheNormalisedOriginals) {
  TempDir dir, out;
  std::vector<std::string> src = sentences(200, 11), tgt = sentences(200, 12);
  std::map<size_t, std::pair<std::string, std::string>> special = {
      // raw text → what SentencePiece's nmt_nfkc normalisation makes of it
      {5, {"  kalo   mine  ", "kalo mine"}},
      {9, {"über straße", "über straße"}},
      {13, {"ｋａｌｏ ﬁsch", "kalo fisch"}},  // full-width letters and the fi ligature (NFKC)
  };
  std::vector<std::string> expected_src = src;
  for (const auto& [i, texts] : special) {
    src[i] = texts.first;
    expected_src[i] = texts.second;
  }
  write_lines(dir / "s.txt", src);
  write_lines(dir / "t.txt", tgt);
  CommandResult r = run_prepare({"--src", dir / "s.txt", "--tgt", dir / "t.txt", "--out", out.str(), "--vocab-size",
                                 "70", "--character-coverage", "1.0", "--shards", "3", "--quiet"});
  ASSERT_EQ(r.code, 0) << r.err;

  for (bool shuffle : {false, true}) {
    ReaderOptions o;
    o.shuffle = shuffle;
    o.batch_tokens = 300;
    o.block_examples = 16;
    o.window_blocks = 2;
    DatasetReader reader(out.str(), o);
    EXPECT_EQ(reader.num_examples(), 200);
    std::set<int64_t> seen;
    Batch b;
    BatchInfo info;
    while (int64_t(seen.size()) < 200 && reader.next(b, &info)) {
      for (int64_t row = 0; row < b.size; ++row) {
        int64_t e = info.examples[size_t(row)];
        EXPECT_TRUE(seen.insert(e).second);
        std::vector<int32_t> s(b.src.begin() + row * b.src_len, b.src.begin() + (row + 1) * b.src_len);
        std::vector<int32_t> t(b.tgt_out.begin() + row * b.tgt_len, b.tgt_out.begin() + (row + 1) * b.tgt_len);
        EXPECT_EQ(reader.tokenizer().decode(s), expected_src[size_t(e)]) << "example " << e;
        EXPECT_EQ(reader.tokenizer().decode(t), tgt[size_t(e)]) << "example " << e;
      }
    }
    EXPECT_EQ(int64_t(seen.size()), 200);
  }
}

// ----------------------------------------------------------------------- bad datasets

// A private copy of the shared dataset that a test may damage.
struct Copy {
  TempDir dir;
  Copy() {
    for (const auto& e : fs::directory_iterator(dataset())) fs::copy_file(e.path(), dir / e.path().filename().string());
  }
  std::string shard(int k) const { return dir / shard_file_name("train", k, 3); }
  // Re-hash a shard into the manifest, so only the damage under test is left to find.
  void rehash(int k) const {
    Manifest m = Manifest::load(dir.str());
    for (auto& [name, split] : m.splits) {
      if (name == "train") split.shards[size_t(k)].sha256 = sha256_file(shard(k));
    }
    m.save(dir.str());
  }
};

std::string open_error(const std::string& dir, ReaderOptions o = options()) {
  try {
    DatasetReader r(dir, o);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(ReaderBadInput, ManifestHashMismatchNamesTheShard) {
  Copy c;
  Manifest m = Manifest::load(c.dir.str());
  m.splits[0].second.shards[1].sha256 = std::string(64, '0');
  m.save(c.dir.str());
  std::string err = open_error(c.dir.str());
  EXPECT_TRUE(contains(err, c.shard(1))) << err;
  EXPECT_TRUE(contains(err, "SHA-256")) << err;
  ReaderOptions o = options();
  o.verify = false;  // the escape hatch for huge datasets
  EXPECT_EQ(open_error(c.dir.str(), o), "");
}

TEST(ReaderBadInput, TruncatedShardIsNamedWithAndWithoutVerification) {
  Copy c;
  std::string bytes = read_text(c.shard(2));
  write_text(c.shard(2), bytes.substr(0, bytes.size() * 2 / 3));
  std::string err = open_error(c.dir.str());
  EXPECT_TRUE(contains(err, c.shard(2))) << err;
  ReaderOptions o = options();
  o.verify = false;
  err = open_error(c.dir.str(), o);
  EXPECT_TRUE(contains(err, c.shard(2))) << err;
}

TEST(ReaderBadInput, WrongShardFormatVersionIsNamed) {
  Copy c;
  hid_t f = H5Fopen(c.shard(0).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
  int64_t v = 2;
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Fclose(f);
  c.rehash(0);
  std::string err = open_error(c.dir.str());
  EXPECT_TRUE(contains(err, c.shard(0))) << err;
  EXPECT_TRUE(contains(err, "format_version is 2")) << err;
}

TEST(ReaderBadInput, CorruptOffsetsAreNamed) {
  Copy c;
  hid_t f = H5Fopen(c.shard(1).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t d = H5Dopen2(f, "/tgt/offsets", H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  hsize_t start = 10, count = 1;
  H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  hid_t mem = H5Screate_simple(1, &count, nullptr);
  int64_t v = 0;  // offsets must not go down
  H5Dwrite(d, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, &v);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  c.rehash(1);
  std::string err = open_error(c.dir.str());
  EXPECT_TRUE(contains(err, c.shard(1))) << err;
  EXPECT_TRUE(contains(err, "/tgt/offsets")) << err;
}

TEST(ReaderBadInput, BadTokenFoundWhileStreamingIsThrownFromNext) {
  Copy c;
  hid_t f = H5Fopen(c.shard(2).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  hid_t d = H5Dopen2(f, "/src/tokens", H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  hsize_t start = 100, count = 1;
  H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
  hid_t mem = H5Screate_simple(1, &count, nullptr);
  uint16_t v = 9999;  // the vocabulary has 64 pieces
  H5Dwrite(d, H5T_NATIVE_UINT16, mem, space, H5P_DEFAULT, &v);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  c.rehash(2);
  ReaderOptions o = options();
  o.shuffle = false;
  DatasetReader r(c.dir.str(), o);  // the index (offsets) is fine; the damage is in the tokens
  Batch b;
  try {
    while (r.next(b)) {
    }
    FAIL() << "the bad token was not noticed";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), c.shard(2))) << e.what();
    EXPECT_TRUE(contains(e.what(), "9999")) << e.what();
  }
}

TEST(ReaderBadInput, ManifestProblemsAreNamed) {
  Copy c;
  fs::remove(c.shard(1));
  std::string err = open_error(c.dir.str());
  EXPECT_TRUE(contains(err, c.shard(1))) << err;

  ReaderOptions o = options();
  o.split = "test";
  err = open_error(dataset(), o);
  EXPECT_TRUE(contains(err, "no split 'test'")) << err;
  EXPECT_TRUE(contains(err, "train, valid")) << err;

  Copy v;
  std::string text = read_text(v.dir / "manifest.json");
  text.replace(text.find("\"format_version\": 1"), 19, "\"format_version\": 2");
  write_text(v.dir / "manifest.json", text);
  err = open_error(v.dir.str());
  EXPECT_TRUE(contains(err, v.dir / "manifest.json")) << err;
  EXPECT_TRUE(contains(err, "format_version is 2")) << err;

  write_text(v.dir / "manifest.json", "{\n  \"format_version\": 1,\n  oops\n}\n");
  err = open_error(v.dir.str());
  EXPECT_TRUE(contains(err, v.dir / "manifest.json:3:")) << err;

  TempDir empty;
  err = open_error(empty.str());
  EXPECT_TRUE(contains(err, "manifest.json is missing")) << err;
}

}  // namespace
}  // namespace tfm
