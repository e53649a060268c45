// Helpers for the data tests only (not part of tfm_data): temporary directories, text files, an
// in-process `tfm prepare`, and a small SentencePiece model shared by a test process.
#pragma once
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "data/tokenizer.h"

namespace tfm::testing_data {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  // `name` only makes the directory recognisable (tfm-test-<pid>-<n>-<name>).
  explicit TempDir(const std::string& name = "data") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("tfm-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + name);
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

inline void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  write_text(path, all);
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Deterministic pseudo-sentences of lower-case syllable words, 1..max_words words each.
inline std::vector<std::string> sentences(int n, uint32_t seed, int max_words = 12) {
  static const char* syllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "xi", "zu",
                                    "an", "el", "or", "um", "ist", "ung", "sch", "ber"};
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string s;
    int words = 1 + int(rng() % uint32_t(max_words));
    for (int w = 0; w < words; ++w) {
      if (w) s += ' ';
      int syl = 1 + int(rng() % 3);
      for (int k = 0; k < syl; ++k) s += syllables[rng() % 18];
    }
    out.push_back(s);
  }
  return out;
}

struct CommandResult {
  int code;
  std::string out, err;
};

// Runs `tfm prepare ARGS…` in this process.
inline CommandResult run_prepare(std::vector<std::string> args) {
  args.insert(args.begin(), "prepare");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream out, err;
  int code = prepare_main(int(argv.size()), argv.data(), out, err);
  return {code, out.str(), err.str()};
}

// A 64-piece model trained once per test process on pseudo-sentences.
inline const Tokenizer& small_tokenizer() {
  static const Tokenizer tok = [] {
    std::vector<std::string> text = sentences(400, 7);
    size_t i = 0;
    TokenizerTrainOptions o;
    o.vocab_size = 64;
    o.threads = 1;
    return Tokenizer::train([&](std::string& s) { return i < text.size() ? (s = text[i++], true) : false; }, o);
  }();
  return tok;
}

}  // namespace tfm::testing_data
