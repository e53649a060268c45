// The bundled demo corpus (`tfm prepare --demo`): short English sentences about a number →
// German, e.g. "please write down four hundred eighty-two" → "bitte schreib
// vierhundertzweiundachtzig auf". Small enough for the tiny model to learn on a CPU in minutes,
// yet it needs real translation: German puts units before tens ("zweiundachtzig"), writes
// numbers below a million as one word, says "eins" alone but "ein" inside a word
// ("einundzwanzig", "einhunderteins"), and some sentence frames move words around the number
// (the separable "schreib … auf"). Sources write the number in English words, or in plain digits
// ("482") for some examples, so the model also learns to read numerals.
//
// The frames make every sentence at least four tokens long on both sides: corpus BLEU needs
// 4-grams (a corpus of one-word references scores 0 whatever the model does).
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

// The sentence frames: "{}" stands for the number (English words or digits; German words).
struct DemoFrame {
  const char* english;
  const char* german;
};
const std::vector<DemoFrame>& demo_frames();
// A frame with its "{}" replaced by `number`.
std::string fill_frame(const char* frame, const std::string& number);

struct DemoSplit {
  std::string name;                                     // train, valid, test
  std::vector<std::pair<std::string, std::string>> pairs;  // (English, German)
  std::vector<int64_t> numbers;                            // the number behind each pair
  std::vector<int> frames;                                 // the demo_frames() index of each pair
};

struct DemoOptions {
  int64_t train = 50000, valid = 1000, test = 1000;
  uint64_t seed = 20171206;  // fixed: the corpus is part of the release
  double digit_fraction = 0.25;  // share of sources written as digits
};

// The three splits, in the order train, valid, test.
std::vector<DemoSplit> make_demo_corpus(const DemoOptions& options = {});

}  // namespace tfm
