// TensorBoard event-file writer (scalars), written from scratch so tfm needs no TensorFlow or
// protobuf library. Format, as TensorBoard's reader (tensorboard/backend/event_processing)
// expects it:
//   file   DIR/events.out.tfevents.<unix seconds, 10 digits>.<hostname>  (".<k>" appended if taken)
//   record [uint64 length][uint32 masked_crc32c(length bytes)][data][uint32 masked_crc32c(data)]
//          (TFRecord framing, little-endian; masked as in trainer/crc32c.h)
//   data   a serialized tensorflow.Event (tensorflow/core/util/event.proto):
//            double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//          Summary { repeated Value value = 1; } Value { string tag = 1; float simple_value = 2; }
// The first record is Event{wall_time, file_version: "brain.Event:2"}; every later record
// carries one step's scalars. Fields are hand-encoded (varint keys and lengths, little-endian
// fixed64/fixed32 values).
//
// Thread-safe (one mutex). Records are buffered; flush() hands them to the OS, and the writer
// flushes on destruction. In a multi-rank run only one rank should write. Throws tfm::Error
// naming the path when the directory or file cannot be created or written.
#pragma once
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tfm {

class TensorBoardWriter {
 public:
  // Creates `dir` (and parents) if needed and a new event file in it.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One Event at `step` with one scalar (stored as float32, as simple_value is).
  void add_scalar(std::string_view tag, double value, int64_t step);
  // One Event at `step` carrying several scalars.
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step);
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);  // caller holds mutex_

  std::string path_;
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
};

namespace tensorboard {
// Serialized Event messages, exposed for tests.
std::string encode_file_version_event(double wall_time);
std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, double>>& values);
// The TFRecord framing of one record around `data`.
std::string frame_record(std::string_view data);
}  // namespace tensorboard

}  // namespace tfm
