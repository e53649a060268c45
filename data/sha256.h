// SHA-256 (FIPS 180-4; test vectors from FIPS 180-2, appendix B). Used to fingerprint the
// tokenizer model, every shard and the prepare inputs, so a reader can refuse a dataset whose
// files are not the ones its manifest describes. Streaming: feed any number of update() calls,
// then hex() once.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tfm {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> digest();
  std::string hex();  // 64 lower-case hex digits of digest()

 private:
  void compress(const uint8_t* block);  // one 64-byte block into state_
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};  // a partial block
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

std::string sha256_hex(std::string_view bytes);
// Hash of a file's bytes; throws tfm::Error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace tfm
