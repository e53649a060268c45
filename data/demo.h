// The bundled demo corpus (`tfm prepare --demo`): English number phrases → German number words,
// e.g. "four hundred eighty-two" → "vierhundertzweiundachtzig". Small enough for the tiny model
// to learn on a CPU in minutes, yet it needs real translation: German puts units before tens
// ("zweiundachtzig"), writes numbers below a million as one word, and says "eins" alone but "ein"
// inside a word ("einundzwanzig", "einhunderteins"). Sources are English words, or plain digits
// ("482") for some examples, so the model also learns to read numerals.
//
// Generation is deterministic (fixed seed): the same files on every machine. Splits hold disjoint
// numbers, so valid/test measure generalisation, not memory.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tfm {

// 0 ≤ n ≤ 999999. American style without "and": 115 → "one hundred fifteen",
// 21000 → "twenty-one thousand".
std::string english_number(int64_t n);
// 0 ≤ n ≤ 999999. One word, "ein" before hundert/tausend: 100 → "einhundert", 1000 → "eintausend".
std::string german_number(int64_t n);

struct DemoSplit {
  std::string name;                                     // train, valid, test
  std::vector<std::pair<std::string, std::string>> pairs;  // (English, German)
  std::vector<int64_t> numbers;                            // the number behind each pair
};

struct DemoOptions {
  int64_t train = 50000, valid = 1000, test = 1000;
  uint64_t seed = 20171206;  // fixed: the corpus is part of the release
  double digit_fraction = 0.25;  // share of sources written as digits
};

// The three splits, in the order train, valid, test.
std::vector<DemoSplit> make_demo_corpus(const DemoOptions& options = {});

}  // namespace tfm
