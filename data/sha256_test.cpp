// SHA-256 against the FIPS 180-2 appendix B test vectors, plus streaming in uneven pieces.
#include "data/sha256.h"

#include <gtest/gtest.h>

#include <string>

namespace tfm {
namespace {

TEST(Sha256, Fips180_2OneBlock) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, Fips180_2TwoBlocks) {
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256, Fips180_2MillionA) {
  Sha256 h;
  std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.update(chunk);
  EXPECT_EQ(h.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, EmptyInput) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256, StreamingInUnevenPiecesEqualsOneShot) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += char('a' + (i * 7) % 26);
  // Every split point across block boundaries (55, 56, 63, 64, 65 are the padding edge cases).
  for (size_t cut : {size_t(0), size_t(1), size_t(55), size_t(56), size_t(63), size_t(64), size_t(65), size_t(999)}) {
    Sha256 h;
    h.update(text.substr(0, cut));
    h.update(text.substr(cut));
    EXPECT_EQ(h.hex(), sha256_hex(text)) << "cut at " << cut;
  }
  for (size_t n : {size_t(55), size_t(56), size_t(64), size_t(119), size_t(120)}) {
    EXPECT_NE(sha256_hex(text.substr(0, n)), sha256_hex(text.substr(0, n + 1)));
  }
}

}  // namespace
}  // namespace tfm
