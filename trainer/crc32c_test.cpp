// CRC-32C against published check values and TensorFlow's masking.
#include "trainer/crc32c.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tfm {
namespace {

TEST(Crc32c, KnownVectors) {
  // The CRC catalogue's check value for CRC-32/ISCSI.
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  // RFC 3720 appendix B.4 (iSCSI): 32 bytes of zeros, of 0xFF, ascending and descending.
  std::vector<unsigned char> buf(32, 0);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x8A9136AAu);
  std::fill(buf.begin(), buf.end(), 0xFF);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x113FDB5Cu);
}

TEST(Crc32c, ChainingEqualsWholeBuffer) {
  const std::string a = "The quick brown fox ", b = "jumps over the lazy dog";
  EXPECT_EQ(crc32c(b, crc32c(a)), crc32c(a + b));
  EXPECT_EQ(crc32c(a + b), 0x22620404u);  // also what TensorBoard's crc32c() gives
}

TEST(Crc32c, MaskMatchesTensorFlowAndInverts) {
  // TensorFlow crc32c::Mask: rotate right 15, add 0xa282ead8.
  EXPECT_EQ(mask_crc32c(0u), 0xa282ead8u);
  EXPECT_EQ(mask_crc32c(0x00008000u), 0xa282ead9u);  // bit 15 rotates to bit 0
  // TensorBoard's own masked_crc32c(b"123456789") (tensorflow_stub/pywrap_tensorflow.py).
  EXPECT_EQ(mask_crc32c(crc32c("123456789")), 0xC78AB0E5u);
  for (uint32_t v : {0u, 1u, 0x8000u, 0xE3069283u, 0xFFFFFFFFu, 0x12345678u})
    EXPECT_EQ(unmask_crc32c(mask_crc32c(v)), v);
}

}  // namespace
}  // namespace tfm
