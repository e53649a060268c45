#include "data/demo.h"

#include <algorithm>

#include "kernels/core/check.h"

namespace tfm {

namespace {

const char* const kEnglishSmall[20] = {"zero", "one", "two", "three", "four", "five", "six",
                                       "seven", "eight", "nine", "ten", "eleven", "twelve",
                                       "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                       "eighteen", "nineteen"};
const char* const kEnglishTens[10] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty",
                                      "seventy", "eighty", "ninety"};

// 1 ≤ n ≤ 999 in English.
std::string english_below_thousand(int64_t n) {
  std::string out;
  if (n >= 100) {
    out = std::string(kEnglishSmall[n / 100]) + " hundred";
    n %= 100;
    if (n == 0) return out;
    out += ' ';
  }
  if (n < 20) return out + kEnglishSmall[n];
  out += kEnglishTens[n / 10];
  if (n % 10) out += std::string("-") + kEnglishSmall[n % 10];
  return out;
}

// German units as they appear inside a word ("ein", not "eins").
const char* const kGermanUnits[10] = {"", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"};
const char* const kGermanTeens[10] = {"zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn",
                                      "sechzehn", "siebzehn", "achtzehn", "neunzehn"};
const char* const kGermanTens[10] = {"", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig",
                                     "siebzig", "achtzig", "neunzig"};

// 1 ≤ n ≤ 999 in German; `final` when nothing follows, where a lone 1 is "eins"
// (101 → "einhunderteins", but 1000 → "eintausend" and 101000 → "einhunderteintausend").
std::string german_below_thousand(int64_t n, bool final) {
  std::string out;
  if (n >= 100) {
    out = std::string(kGermanUnits[n / 100]) + "hundert";
    n %= 100;
  }
  if (n == 0) return out;
  if (n == 1) return out + (final ? "eins" : "ein");
  if (n < 10) return out + kGermanUnits[n];
  if (n < 20) return out + kGermanTeens[n - 10];
  if (n % 10) out += std::string(kGermanUnits[n % 10]) + "und";  // units before tens
  return out + kGermanTens[n / 10];
}

// SplitMix64: a small, fully specified generator, so the corpus is identical on every platform
// (std::uniform_int_distribution is not).
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }
  double unit() { return double(next() >> 11) * 0x1.0p-53; }
};

}  // namespace

std::string english_number(int64_t n) {
  TFM_CHECK(n >= 0 && n <= 999999, "english_number: ", n, " outside [0, 999999]");
  if (n == 0) return "zero";
  std::string out;
  if (n >= 1000) {
    out = english_below_thousand(n / 1000) + " thousand";
    n %= 1000;
    if (n == 0) return out;
    out += ' ';
  }
  return out + english_below_thousand(n);
}

std::string german_number(int64_t n) {
  TFM_CHECK(n >= 0 && n <= 999999, "german_number: ", n, " outside [0, 999999]");
  if (n == 0) return "null";
  std::string out;
  if (n >= 1000) out = german_below_thousand(n / 1000, false) + "tausend";
  return out + german_below_thousand(n % 1000, true);
}

const std::vector<DemoFrame>& demo_frames() {
  static const std::vector<DemoFrame> frames = {
      {"the number is {}", "die Zahl ist {}"},
      {"my answer is {}", "meine Antwort ist {}"},
      {"please write down {}", "bitte schreib {} auf"},
      {"he said {} twice", "er sagte zweimal {}"},
      {"{} is the result", "{} ist das Ergebnis"},
      {"the code is {} again", "der Code ist wieder {}"},
  };
  return frames;
}

std::string fill_frame(const char* frame, const std::string& number) {
  std::string out = frame;
  const size_t at = out.find("{}");
  TFM_CHECK(at != std::string::npos, "fill_frame: '", frame, "' has no {}");
  return out.replace(at, 2, number);
}

std::vector<DemoSplit> make_demo_corpus(const DemoOptions& o) {
  TFM_CHECK(o.train >= 0 && o.valid >= 0 && o.test >= 0, "make_demo_corpus: negative split size");
  const int64_t total = o.train + o.valid + o.test;
  TFM_CHECK(total <= 1000000, "make_demo_corpus: at most 1000000 distinct numbers, asked for ", total);
  SplitMix rng{o.seed};
  // Every number below 1000 (the building blocks of all others) plus a sample of larger ones,
  // about a tenth of them four-digit, so short and long numbers are both well represented.
  std::vector<int64_t> numbers;
  for (int64_t n = 0; n < std::min<int64_t>(1000, total); ++n) numbers.push_back(n);
  std::vector<bool> taken(1000000, false);
  for (int64_t n : numbers) taken[size_t(n)] = true;
  while (int64_t(numbers.size()) < total) {
    int64_t n = rng.unit() < 0.1 ? 1000 + rng.below(9000) : 10000 + rng.below(990000);
    if (taken[size_t(n)]) continue;
    taken[size_t(n)] = true;
    numbers.push_back(n);
  }
  for (size_t i = numbers.size(); i > 1; --i) std::swap(numbers[i - 1], numbers[size_t(rng.below(int64_t(i)))]);

  std::vector<DemoSplit> splits = {{"train", {}, {}, {}}, {"valid", {}, {}, {}}, {"test", {}, {}, {}}};
  const auto& frames = demo_frames();
  const int64_t sizes[3] = {o.train, o.valid, o.test};
  size_t next = 0;
  for (int s = 0; s < 3; ++s) {
    for (int64_t k = 0; k < sizes[s]; ++k) {
      int64_t n = numbers[next++];
      std::string src = rng.unit() < o.digit_fraction ? std::to_string(n) : english_number(n);
      const int f = int(rng.below(int64_t(frames.size())));
      splits[size_t(s)].pairs.emplace_back(fill_frame(frames[size_t(f)].english, src),
                                           fill_frame(frames[size_t(f)].german, german_number(n)));
      splits[size_t(s)].numbers.push_back(n);
      splits[size_t(s)].frames.push_back(f);
    }
  }
  return splits;
}

}  // namespace tfm
