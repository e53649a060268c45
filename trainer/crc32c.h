// CRC-32C (Castagnoli: polynomial 0x1EDC6F41, reflected 0x82F63B78, initial value and final XOR
// 0xFFFFFFFF; RFC 3720 appendix B.4), the checksum of TFRecord framing, plus TensorFlow's
// "masked" form that TFRecord stores (tensorflow/core/lib/hash/crc32c.h: Mask/Unmask) so that a
// CRC computed over data that itself contains CRCs does not look like a valid record.
//   crc32c("123456789") = 0xE3069283.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tfm {

// CRC-32C of n bytes. To checksum data in pieces, pass the previous result as `crc`:
// crc32c(b, nb, crc32c(a, na)) == crc32c(a ‖ b).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32c(std::string_view s, uint32_t crc = 0) {
  return crc32c(s.data(), s.size(), crc);
}

// Rotate right by 15 bits and add a constant: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
constexpr uint32_t mask_crc32c(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}
constexpr uint32_t unmask_crc32c(uint32_t masked) {
  const uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace tfm
