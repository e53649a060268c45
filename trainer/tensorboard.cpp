// TensorBoard event files; see tensorboard.h for the format. Protobuf wire format
// (protobuf.dev/programming-guides/encoding): a field is key = (field_number << 3) | wire_type
// as a varint, then the value — varint (type 0), 8 little-endian bytes (type 1), a varint
// length and the bytes (type 2), or 4 little-endian bytes (type 5).
#include "trainer/tensorboard.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "kernels/core/check.h"
#include "trainer/crc32c.h"

namespace tfm {

namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_key(std::string& out, uint32_t field, WireType type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | type);
}

template <class T>
void put_little_endian(std::string& out, T bits) {
  for (size_t i = 0; i < sizeof(T); ++i) out += static_cast<char>((bits >> (8 * i)) & 0xFF);
}

void put_double(std::string& out, uint32_t field, double v) {
  put_key(out, field, kFixed64);
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_little_endian(out, bits);
}

void put_float(std::string& out, uint32_t field, float v) {
  put_key(out, field, kFixed32);
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_little_endian(out, bits);
}

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// int64 as a varint: negative values are their two's complement (10 bytes), as protobuf does.
void put_int64(std::string& out, uint32_t field, int64_t v) {
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));
}

// tensorflow.Event field numbers.
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
// tensorflow.Summary and Summary.Value field numbers.
constexpr uint32_t kSummaryValue = 1, kValueTag = 1, kValueSimpleValue = 2;

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

namespace tensorboard {

std::string encode_file_version_event(double wall_time) {
  std::string event;
  put_double(event, kEventWallTime, wall_time);
  put_bytes(event, kEventFileVersion, "brain.Event:2");
  return event;
}

std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;
  for (const auto& [tag, value] : values) {
    std::string v;
    put_bytes(v, kValueTag, tag);
    put_float(v, kValueSimpleValue, static_cast<float>(value));
    put_bytes(summary, kSummaryValue, v);
  }
  std::string event;
  put_double(event, kEventWallTime, wall_time);
  put_int64(event, kEventStep, step);
  put_bytes(event, kEventSummary, summary);
  return event;
}

std::string frame_record(std::string_view data) {
  std::string header;
  put_little_endian(header, static_cast<uint64_t>(data.size()));
  std::string record = header;
  put_little_endian(record, mask_crc32c(crc32c(header)));
  record.append(data);
  put_little_endian(record, mask_crc32c(crc32c(data)));
  return record;
}

}  // namespace tensorboard

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TFM_CHECK(!ec, "TensorBoard: cannot create directory '", dir, "': ", ec.message());
  const double wall_time = now_seconds();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%010lld", static_cast<long long>(wall_time));
  const std::string stem = cat(std::filesystem::path(dir).string(), "/events.out.tfevents.",
                               stamp, ".", hostname());
  // "x": never clobber an existing file (two writers started within the same second).
  for (int k = 0; !file_; ++k) {
    path_ = k ? cat(stem, ".", k) : stem;
    file_ = std::fopen(path_.c_str(), "wbx");
    TFM_CHECK(file_ || (errno == EEXIST && k < 1000), "TensorBoard: cannot create '", path_,
              "': ", std::strerror(errno));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  write_record(tensorboard::encode_file_version_event(wall_time));
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);  // flushes; a destructor must not throw, so errors are dropped
}

void TensorBoardWriter::write_record(const std::string& data) {
  const std::string record = tensorboard::frame_record(data);
  TFM_CHECK(std::fwrite(record.data(), 1, record.size(), file_) == record.size(),
            "TensorBoard: cannot write '", path_, "': ", std::strerror(errno));
}

void TensorBoardWriter::add_scalar(std::string_view tag, double value, int64_t step) {
  add_scalars({{std::string(tag), value}}, step);
}

void TensorBoardWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values,
                                    int64_t step) {
  const std::string event = tensorboard::encode_scalars_event(now_seconds(), step, values);
  std::lock_guard<std::mutex> lock(mutex_);
  write_record(event);
}

void TensorBoardWriter::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  TFM_CHECK(std::fflush(file_) == 0, "TensorBoard: cannot flush '", path_, "': ",
            std::strerror(errno));
}

}  // namespace tfm
