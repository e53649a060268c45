// TensorBoard event files read back by an independent minimal reader written here: TFRecord
// framing with both masked CRCs checked, then a generic protobuf field walk that decodes Event,
// Summary and Value. The expected wire bytes of one small Event are also spelled out by hand.
#include "trainer/tensorboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <thread>

#include "kernels/core/check.h"
#include "trainer/crc32c.h"

namespace tfm {
namespace {

namespace fs = std::filesystem;

// ---- A minimal reader, independent of the writer's helpers. ----
uint64_t read_le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s.at(at + i));
  return v;
}

// Splits a TFRecord file into record payloads, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) throw Error(cat("truncated header at byte ", at));
    const uint64_t len = read_le(bytes, at, 8);
    const auto len_crc = static_cast<uint32_t>(read_le(bytes, at + 8, 4));
    if (len_crc != mask_crc32c(crc32c(bytes.data() + at, 8)))
      throw Error(cat("bad length CRC at byte ", at));
    if (bytes.size() - at - 12 < len + 4) throw Error(cat("truncated record at byte ", at));
    std::string data = bytes.substr(at + 12, len);
    const auto data_crc = static_cast<uint32_t>(read_le(bytes, at + 12 + len, 4));
    if (data_crc != mask_crc32c(crc32c(data))) throw Error(cat("bad data CRC at byte ", at));
    records.push_back(std::move(data));
    at += 12 + len + 4;
  }
  return records;
}

struct Field {
  uint32_t number;
  uint32_t wire_type;
  uint64_t varint = 0;  // wire types 0, 1 (raw 8 bytes), 5 (raw 4 bytes)
  std::string bytes;    // wire type 2
};

uint64_t get_varint(const std::string& s, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    const auto b = static_cast<unsigned char>(s.at(at++));
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) return v;
  }
  throw Error("varint too long");
}

std::vector<Field> parse_message(const std::string& s) {
  std::vector<Field> fields;
  size_t at = 0;
  while (at < s.size()) {
    const uint64_t key = get_varint(s, at);
    Field f;
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    switch (f.wire_type) {
      case 0: f.varint = get_varint(s, at); break;
      case 1: f.varint = read_le(s, at, 8), at += 8; break;
      case 5: f.varint = read_le(s, at, 4), at += 4; break;
      case 2: {
        const uint64_t len = get_varint(s, at);
        f.bytes = s.substr(at, len);
        if (f.bytes.size() != len) throw Error("truncated length-delimited field");
        at += len;
        break;
      }
      default: throw Error(cat("unexpected wire type ", f.wire_type));
    }
    fields.push_back(f);
  }
  return fields;
}

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;
};

Event decode_event(const std::string& data) {
  Event e;
  for (const Field& f : parse_message(data)) {
    if (f.number == 1 && f.wire_type == 1) {
      std::memcpy(&e.wall_time, &f.varint, 8);
    } else if (f.number == 2 && f.wire_type == 0) {
      e.step = static_cast<int64_t>(f.varint);
    } else if (f.number == 3 && f.wire_type == 2) {
      e.file_version = f.bytes;
    } else if (f.number == 5 && f.wire_type == 2) {
      for (const Field& v : parse_message(f.bytes)) {
        EXPECT_EQ(v.number, 1u);  // Summary.value
        std::pair<std::string, float> tv;
        for (const Field& x : parse_message(v.bytes)) {
          if (x.number == 1 && x.wire_type == 2) tv.first = x.bytes;
          if (x.number == 2 && x.wire_type == 5) {
            const auto bits = static_cast<uint32_t>(x.varint);
            std::memcpy(&tv.second, &bits, 4);
          }
        }
        e.values.push_back(tv);
      }
    } else {
      ADD_FAILURE() << "unexpected Event field " << f.number << " wire type " << f.wire_type;
    }
  }
  return e;
}

class TensorBoardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tfm_tb_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(TensorBoardTest, FileNameFollowsTensorFlowConvention) {
  const double before = std::floor(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  TensorBoardWriter w((dir_ / "nested" / "tb").string());  // directories are created
  const std::string name = fs::path(w.path()).filename().string();
  ASSERT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  const std::string stamp = name.substr(20, 10);
  EXPECT_EQ(name[30], '.') << name;
  const double t = std::stod(stamp);
  EXPECT_GE(t, before);
  EXPECT_LE(t, before + 60);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_EQ(name.substr(31), std::string(host));
  EXPECT_TRUE(fs::exists(w.path()));
}

TEST_F(TensorBoardTest, SecondWriterInSameSecondGetsItsOwnFile) {
  TensorBoardWriter a(dir_.string());
  TensorBoardWriter b(dir_.string());
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("x", 1, 1);
  b.add_scalar("x", 2, 1);
  a.flush();
  b.flush();
  EXPECT_EQ(read_records(a.path()).size(), 2u);
  EXPECT_EQ(read_records(b.path()).size(), 2u);
}

TEST_F(TensorBoardTest, ScalarsReadBackWithValidCrcs) {
  std::string path;
  {
    TensorBoardWriter w(dir_.string());
    path = w.path();
    w.add_scalar("train/loss", 4.25, 1);
    w.add_scalar("train/loss", 3.5, 2);
    w.add_scalars({{"lr", 3.1e-4}, {"tokens_per_s", 12345.0}}, 300);
    w.add_scalar("big_step", -1.5, int64_t{1} << 40);
    w.add_scalar("negative_step", 0.0, -7);  // int64 varint of a negative is 10 bytes
    w.add_scalar("not_a_number", std::numeric_limits<double>::quiet_NaN(), 5);
    w.flush();
    // flush() makes everything so far readable while the writer is still open.
    EXPECT_EQ(read_records(path).size(), 7u);
  }
  const auto records = read_records(path);
  ASSERT_EQ(records.size(), 7u);
  const Event first = decode_event(records[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_TRUE(first.values.empty());
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_GT(first.wall_time, now - 60);
  EXPECT_LE(first.wall_time, now);

  const Event e1 = decode_event(records[1]);
  EXPECT_EQ(e1.step, 1);
  ASSERT_EQ(e1.values.size(), 1u);
  EXPECT_EQ(e1.values[0].first, "train/loss");
  EXPECT_EQ(e1.values[0].second, 4.25f);
  EXPECT_GE(e1.wall_time, first.wall_time);
  EXPECT_EQ(decode_event(records[2]).values[0].second, 3.5f);

  const Event e3 = decode_event(records[3]);
  EXPECT_EQ(e3.step, 300);
  ASSERT_EQ(e3.values.size(), 2u);
  EXPECT_EQ(e3.values[0].first, "lr");
  EXPECT_EQ(e3.values[0].second, 3.1e-4f);
  EXPECT_EQ(e3.values[1].first, "tokens_per_s");
  EXPECT_EQ(e3.values[1].second, 12345.0f);

  EXPECT_EQ(decode_event(records[4]).step, int64_t{1} << 40);
  EXPECT_EQ(decode_event(records[5]).step, -7);
  EXPECT_TRUE(std::isnan(decode_event(records[6]).values.at(0).second));
}

TEST_F(TensorBoardTest, WireBytesOfOneEvent) {
  // Event{wall_time: 1.0, step: 3, summary{value{tag: "a", simple_value: 2.0}}}, by hand:
  const std::string want = std::string("\x09\x00\x00\x00\x00\x00\x00\xf0\x3f", 9)  // 1: double 1.0
                           + std::string("\x10\x03", 2)                          // 2: varint 3
                           + std::string("\x2a\x0a", 2)                          // 5: 10 bytes
                           + std::string("\x0a\x08", 2)                          //  value: 8 bytes
                           + std::string("\x0a\x01" "a", 3)                      //   tag "a"
                           + std::string("\x15\x00\x00\x00\x40", 5);             //   float 2.0
  EXPECT_EQ(tensorboard::encode_scalars_event(1.0, 3, {{"a", 2.0}}), want);
  // Framing: little-endian length, masked CRCs, as TFRecord writes them.
  const std::string rec = tensorboard::frame_record("hi");
  ASSERT_EQ(rec.size(), 8u + 4 + 2 + 4);
  EXPECT_EQ(rec.substr(0, 8), std::string("\x02\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(read_le(rec, 8, 4), mask_crc32c(crc32c(rec.data(), 8)));
  EXPECT_EQ(rec.substr(12, 2), "hi");
  EXPECT_EQ(read_le(rec, 14, 4), mask_crc32c(crc32c("hi")));
}

TEST_F(TensorBoardTest, ReaderRejectsCorruption) {
  // The test reader must notice a flipped bit, or the CRC checks above prove nothing.
  std::string path;
  {
    TensorBoardWriter w(dir_.string());
    path = w.path();
    w.add_scalar("loss", 1.0, 1);
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-6, std::ios::end);  // inside the last record's payload
  f.put('\x7f');
  f.close();
  EXPECT_THROW(read_records(path), Error);
}

TEST_F(TensorBoardTest, UncreatableDirectoryNamesPath) {
  fs::create_directories(dir_);
  const std::string file = (dir_ / "plain_file").string();
  std::ofstream(file) << "x";
  try {
    TensorBoardWriter w(file + "/sub");
    FAIL() << "expected tfm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(file + "/sub"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tfm
