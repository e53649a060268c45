// The HDF5 shard format: round trip for both token types, the layout DESIGN.md promises,
// reproducible bytes, atomic completion, and errors naming the shard.
#include "data/shard.h"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>

#include "data/sha256.h"
#include "data/test_helpers.h"
#include "kernels/core/check.h"

namespace tfm {
namespace {

using namespace testing_data;

std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> examples(int n, int32_t vocab) {
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> s, t;
    for (int k = 0; k < i % 7; ++k) s.push_back((i * 31 + k * 7) % vocab);  // includes empty sources
    for (int k = 0; k < 1 + i % 5; ++k) t.push_back((i * 17 + k * 3 + vocab - 1) % vocab);
    out.emplace_back(s, t);
  }
  return out;
}

void write_shard(const std::string& path, int64_t vocab,
                 const std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>& ex) {
  ShardWriter w(path, vocab, std::string(64, 'a'));
  for (const auto& [s, t] : ex) w.add(s, t);
  w.finish();
}

void expect_round_trip(int64_t vocab) {
  TempDir dir;
  auto ex = examples(3000, int32_t(vocab));
  write_shard(dir / "s.h5", vocab, ex);
  ShardFile f(dir / "s.h5");
  ASSERT_EQ(f.num_examples(), 3000);
  EXPECT_EQ(f.vocab_size(), vocab);
  EXPECT_EQ(f.tokenizer_sha256(), std::string(64, 'a'));
  std::vector<int64_t> off[2];
  for (int side = 0; side < 2; ++side) {
    off[side].resize(3001);
    f.read_offsets(Side(side), 0, 3001, off[side].data());
    EXPECT_EQ(off[side][0], 0);
    EXPECT_EQ(off[side].back(), f.num_tokens(Side(side)));
  }
  for (int i = 0; i < 3000; i += 37) {
    for (int side = 0; side < 2; ++side) {
      const auto& want = side == 0 ? ex[size_t(i)].first : ex[size_t(i)].second;
      std::vector<int32_t> got(size_t(off[side][size_t(i) + 1] - off[side][size_t(i)]));
      f.read_tokens(Side(side), off[side][size_t(i)], int64_t(got.size()), got.data());
      EXPECT_EQ(got, want) << "example " << i << " side " << side;
    }
  }
}

TEST(Shard, RoundTripUint16) { expect_round_trip(8000); }
TEST(Shard, RoundTripInt32ForLargeVocabularies) { expect_round_trip(70000); }

TEST(Shard, LayoutAsDesignMdSays) {
  TempDir dir;
  write_shard(dir / "s.h5", 500, examples(10, 500));
  hid_t file = H5Fopen((dir / "s.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  auto type_of = [&](const char* name, H5T_class_t* cls, size_t* size, H5T_sign_t* sign) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    ASSERT_GE(ds, 0) << name;
    hid_t t = H5Dget_type(ds);
    *cls = H5Tget_class(t);
    *size = H5Tget_size(t);
    *sign = H5Tget_sign(t);
    hid_t dcpl = H5Dget_create_plist(ds);
    EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED) << name;
    EXPECT_EQ(H5Pget_nfilters(dcpl), 0) << name << " should not be compressed";
    H5Pclose(dcpl);
    H5Tclose(t);
    H5Dclose(ds);
  };
  H5T_class_t cls;
  size_t size;
  H5T_sign_t sign;
  for (const char* name : {"/src/tokens", "/tgt/tokens"}) {
    type_of(name, &cls, &size, &sign);
    EXPECT_EQ(cls, H5T_INTEGER);
    EXPECT_EQ(size, 2u);
    EXPECT_EQ(sign, H5T_SGN_NONE);
  }
  for (const char* name : {"/src/offsets", "/tgt/offsets"}) {
    type_of(name, &cls, &size, &sign);
    EXPECT_EQ(cls, H5T_INTEGER);
    EXPECT_EQ(size, 8u);
    EXPECT_EQ(sign, H5T_SGN_2);
  }
  for (const char* attr : {"format_version", "num_examples", "vocab_size", "tokenizer_sha256"}) {
    EXPECT_GT(H5Aexists(file, attr), 0) << attr;
  }
  H5Fclose(file);
}

TEST(Shard, SameContentSameBytes) {
  TempDir dir;
  write_shard(dir / "a.h5", 500, examples(500, 500));
  write_shard(dir / "b.h5", 500, examples(500, 500));
  EXPECT_EQ(sha256_file(dir / "a.h5"), sha256_file(dir / "b.h5"));
  write_shard(dir / "c.h5", 500, examples(501, 500));
  EXPECT_NE(sha256_file(dir / "a.h5"), sha256_file(dir / "c.h5"));
}

TEST(Shard, EmptyShardIsValid) {
  TempDir dir;
  write_shard(dir / "e.h5", 100, {});
  ShardFile f(dir / "e.h5");
  EXPECT_EQ(f.num_examples(), 0);
  EXPECT_EQ(f.num_tokens(Side::src), 0);
  int64_t off = -1;
  f.read_offsets(Side::tgt, 0, 1, &off);
  EXPECT_EQ(off, 0);
}

TEST(Shard, UnfinishedWriterLeavesNothingAndFinishedOneNoTemp) {
  TempDir dir;
  {
    ShardWriter w(dir / "u.h5", 100, "x");
    w.add({5, 6}, {7});
    EXPECT_TRUE(std::filesystem::exists(dir / "u.h5.tmp"));
    EXPECT_FALSE(std::filesystem::exists(dir / "u.h5"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "u.h5.tmp"));
  EXPECT_FALSE(std::filesystem::exists(dir / "u.h5"));
  write_shard(dir / "f.h5", 100, examples(3, 100));
  EXPECT_TRUE(std::filesystem::exists(dir / "f.h5"));
  EXPECT_FALSE(std::filesystem::exists(dir / "f.h5.tmp"));
}

TEST(Shard, IdsOutsideTheVocabularyAreRefused) {
  TempDir dir;
  ShardWriter w(dir / "v.h5", 100, "x");
  EXPECT_THROW(w.add({5, 100}, {7}), Error);
  EXPECT_THROW(w.add({5}, {-1}), Error);
}

TEST(Shard, TruncatedAndForeignFilesNameTheShard) {
  TempDir dir;
  write_shard(dir / "t.h5", 100, examples(2000, 100));
  std::string bytes = read_text(dir / "t.h5");
  write_text(dir / "cut.h5", bytes.substr(0, bytes.size() / 2));
  write_text(dir / "text.h5", "hello, not HDF5\n");
  for (const char* name : {"cut.h5", "text.h5", "missing.h5"}) {
    try {
      ShardFile f(dir / name);
      FAIL() << name << " opened";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir / name), std::string::npos) << e.what();
    }
  }
}

TEST(Shard, ReadsOutsideTheDatasetAreErrors) {
  TempDir dir;
  write_shard(dir / "r.h5", 100, examples(5, 100));
  ShardFile f(dir / "r.h5");
  std::vector<int32_t> buf(100);
  EXPECT_THROW(f.read_tokens(Side::src, 0, f.num_tokens(Side::src) + 1, buf.data()), Error);
  std::vector<int64_t> off(10);
  EXPECT_THROW(f.read_offsets(Side::src, 1, 6, off.data()), Error);
}

TEST(Shard, FileNames) {
  EXPECT_EQ(shard_file_name("train", 3, 16), "train-00003-of-00016.h5");
}

}  // namespace
}  // namespace tfm
