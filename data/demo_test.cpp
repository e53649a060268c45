// Number words written out by hand from English and German grammar, and the demo corpus's
// promises: deterministic, disjoint splits, every pair a correct translation.
#include "data/demo.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <set>

#include "kernels/core/check.h"

namespace tfm {
namespace {

TEST(Demo, EnglishNumbers) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {0, "zero"}, {1, "one"}, {7, "seven"}, {11, "eleven"}, {16, "sixteen"}, {17, "seventeen"},
      {21, "twenty-one"}, {30, "thirty"}, {99, "ninety-nine"}, {100, "one hundred"},
      {101, "one hundred one"}, {110, "one hundred ten"}, {482, "four hundred eighty-two"},
      {1000, "one thousand"}, {1001, "one thousand one"}, {12345, "twelve thousand three hundred forty-five"},
      {21000, "twenty-one thousand"}, {100000, "one hundred thousand"},
      {999999, "nine hundred ninety-nine thousand nine hundred ninety-nine"}};
  for (const auto& [n, words] : cases) EXPECT_EQ(english_number(n), words) << n;
}

TEST(Demo, GermanNumbers) {
  const std::vector<std::pair<int64_t, std::string>> cases = {
      {0, "null"}, {1, "eins"}, {7, "sieben"}, {11, "elf"}, {12, "zwölf"}, {16, "sechzehn"},
      {17, "siebzehn"}, {21, "einundzwanzig"}, {30, "dreißig"}, {60, "sechzig"}, {66, "sechsundsechzig"},
      {70, "siebzig"}, {77, "siebenundsiebzig"}, {99, "neunundneunzig"}, {100, "einhundert"},
      {101, "einhunderteins"}, {200, "zweihundert"}, {310, "dreihundertzehn"},
      {482, "vierhundertzweiundachtzig"}, {1000, "eintausend"}, {1001, "eintausendeins"},
      {1100, "eintausendeinhundert"}, {12345, "zwölftausenddreihundertfünfundvierzig"},
      {21000, "einundzwanzigtausend"}, {101000, "einhunderteintausend"}, {201001, "zweihunderteintausendeins"},
      {999999, "neunhundertneunundneunzigtausendneunhundertneunundneunzig"}};
  for (const auto& [n, words] : cases) EXPECT_EQ(german_number(n), words) << n;
}

TEST(Demo, OutOfRangeIsAnError) {
  EXPECT_THROW(english_number(-1), Error);
  EXPECT_THROW(english_number(1000000), Error);
  EXPECT_THROW(german_number(1000000), Error);
}

TEST(Demo, CorpusIsDeterministicDisjointAndCorrect) {
  DemoOptions o;
  o.train = 3000;
  o.valid = 200;
  o.test = 200;
  auto a = make_demo_corpus(o), b = make_demo_corpus(o);
  ASSERT_EQ(a.size(), 3u);
  std::set<int64_t> seen;
  int64_t digits = 0, total = 0;
  std::vector<int64_t> frame_use(demo_frames().size(), 0);
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_EQ(a[s].pairs, b[s].pairs);
    EXPECT_EQ(int64_t(a[s].pairs.size()), s == 0 ? o.train : s == 1 ? o.valid : o.test);
    for (size_t i = 0; i < a[s].pairs.size(); ++i) {
      int64_t n = a[s].numbers[i];
      EXPECT_TRUE(seen.insert(n).second) << n << " appears twice";
      const auto& [src, tgt] = a[s].pairs[i];
      const DemoFrame& frame = demo_frames().at(size_t(a[s].frames[i]));
      EXPECT_EQ(tgt, fill_frame(frame.german, german_number(n)));
      bool as_digits = src == fill_frame(frame.english, std::to_string(n));
      EXPECT_TRUE(as_digits || src == fill_frame(frame.english, english_number(n))) << src;
      // At least four words a side, so corpus BLEU has 4-grams to count.
      EXPECT_GE(std::count(tgt.begin(), tgt.end(), ' '), 3) << tgt;
      EXPECT_GE(std::count(src.begin(), src.end(), ' '), 3) << src;
      ++frame_use[size_t(a[s].frames[i])];
      digits += as_digits;
      ++total;
    }
  }
  for (int64_t used : frame_use) EXPECT_GT(used, total / int64_t(2 * frame_use.size()));  // all frames
  // DemoOptions::digit_fraction: about a quarter of the sources are digits.
  EXPECT_GT(digits, total / 6);
  EXPECT_LT(digits, total / 3);
  o.seed += 1;
  EXPECT_NE(make_demo_corpus(o)[0].pairs, a[0].pairs);
}

}  // namespace
}  // namespace tfm
