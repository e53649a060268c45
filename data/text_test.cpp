// Line reading (terminators, line numbers, a last line without newline) and UTF-8 validation.
#include "data/text.h"

#include <gtest/gtest.h>

#include "data/test_helpers.h"
#include "kernels/core/check.h"

namespace tfm {
namespace {

using namespace testing_data;

TEST(Text, LinesWithLfCrlfAndNoFinalNewline) {
  TempDir dir;
  const char bytes[] = "one\r\ntwo\n\nfour with \0 nul\nfive";
  write_text(dir / "a.txt", std::string(bytes, sizeof bytes - 1));  // keeps the NUL
  LineReader r(dir / "a.txt");
  std::vector<std::string> lines;
  std::string line;
  while (r.next(line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "one");
  EXPECT_EQ(lines[1], "two");
  EXPECT_EQ(lines[2], "");
  EXPECT_EQ(lines[3], std::string("four with \0 nul", 15));
  EXPECT_EQ(lines[4], "five");
  EXPECT_EQ(r.line_number(), 5);
  EXPECT_FALSE(r.next(line));
}

TEST(Text, MissingFileOrDirectoryIsNamed) {
  TempDir dir;
  try {
    LineReader r(dir / "nope.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "nope.txt"), std::string::npos);
  }
  EXPECT_THROW(LineReader(dir.str()), Error);
}

TEST(Text, Utf8Validation) {
  EXPECT_EQ(find_invalid_utf8("plain ascii"), -1);
  EXPECT_EQ(find_invalid_utf8("über straße 😀 ∑"), -1);
  EXPECT_EQ(find_invalid_utf8("ab\xff"), 2);
  EXPECT_EQ(find_invalid_utf8("a\xc3"), 1);                 // truncated sequence
  EXPECT_EQ(find_invalid_utf8("a\xc3\x28"), 1);             // bad continuation byte
  EXPECT_EQ(find_invalid_utf8("\xc0\xaf"), 0);              // overlong '/'
  EXPECT_EQ(find_invalid_utf8("x\xed\xa0\x80"), 1);         // UTF-16 surrogate
  EXPECT_EQ(find_invalid_utf8("\xf4\x90\x80\x80"), 0);      // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xf4\x8f\xbf\xbf"), -1);     // U+10FFFF itself
}

TEST(Text, Blank) {
  EXPECT_TRUE(is_blank(""));
  EXPECT_TRUE(is_blank(" \t \r"));
  EXPECT_FALSE(is_blank(" x "));
}

}  // namespace
}  // namespace tfm
