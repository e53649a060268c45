// Data-layer throughput (not part of the test suite):
//   reader:  tokens/s that DatasetReader yields from a generated dataset of ≥ 50M tokens, written
//            straight from ids with the shard writer (no SentencePiece), one epoch, one process;
//            also the time to open it (manifest + SHA-256 of every shard + offsets index).
//   prepare: sentence pairs/s of `tfm prepare` (scan, encode on all cores, write shards) on the
//            demo corpus with an existing SentencePiece model, and the demo end to end with
//            training.
// Usage: tfm_data_bench [--dir D] [--tokens N] [--batch-tokens N] [--threads N] [--skip-reader]
//                       [--skip-prepare] [--keep]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data/id_dataset.h"
#include "data/prepare.h"
#include "data/reader.h"
#include "data/tokenizer.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

tfm::Tokenizer bench_tokenizer() {
  // 1000 pieces from pseudo-words; the benchmark's ids only need to lie in the vocabulary.
  std::mt19937 rng(1);
  const char* syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "xi", "zu", "an", "el", "or", "um", "ist", "ung"};
  std::vector<std::string> text;
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    for (int w = 0; w < 10; ++w) {
      if (w) s += ' ';
      for (uint32_t k = 0; k < 1 + rng() % 4; ++k) s += syl[rng() % 16];
    }
    text.push_back(s);
  }
  size_t i = 0;
  tfm::TokenizerTrainOptions o;
  o.vocab_size = 1000;
  return tfm::Tokenizer::train([&](std::string& s) { return i < text.size() ? (s = text[i++], true) : false; }, o);
}

int run_prepare(std::vector<std::string> args) {
  args.insert(args.begin(), "prepare");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return tfm::prepare_main(int(argv.size()), argv.data());
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = (fs::temp_directory_path() / "tfm-data-bench").string();
  int64_t target_tokens = 50'000'000, batch_tokens = 25000;
  int threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool reader = true, prepare = true, keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; std::exit(2); }
      return std::string(argv[++i]);
    };
    if (a == "--dir") dir = value();
    else if (a == "--tokens") target_tokens = std::stoll(value());
    else if (a == "--batch-tokens") batch_tokens = std::stoll(value());
    else if (a == "--threads") threads = std::stoi(value());
    else if (a == "--skip-reader") reader = false;
    else if (a == "--skip-prepare") prepare = false;
    else if (a == "--keep") keep = true;
    else { std::cerr << "unknown option " << a << "\n"; return 2; }
  }
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::printf("data bench: %u hardware threads, dir %s\n", std::thread::hardware_concurrency(), dir.c_str());

  if (reader) {
    // Pair lengths like WMT En-De after BPE: source 1..100 tokens, target ≈ source ± 20%.
    tfm::Tokenizer tok = bench_tokenizer();
    const int64_t avg_pair_tokens = 100;  // ≈ 50.5 source + 50.5 target
    const int64_t pairs = target_tokens / avg_pair_tokens;
    auto example = [&](int64_t i, std::vector<int32_t>& s, std::vector<int32_t>& t) {
      std::mt19937_64 rng(uint64_t(i) * 0x9e3779b97f4a7c15ULL + 1);
      int64_t n = 1 + int64_t(rng() % 100);
      int64_t m = std::max<int64_t>(1, n + int64_t(rng() % (n / 5 * 2 + 1)) - n / 5);
      for (int64_t k = 0; k < n; ++k) s.push_back(int32_t(4 + rng() % 996));
      for (int64_t k = 0; k < m; ++k) t.push_back(int32_t(4 + rng() % 996));
    };
    const std::string data = dir + "/ids";
    auto t0 = Clock::now();
    tfm::write_id_dataset(data, tok, {{"train", pairs, 8, example}});
    double write_s = since(t0);

    tfm::ReaderOptions o;
    o.batch_tokens = batch_tokens;
    t0 = Clock::now();
    tfm::DatasetReader r(data, o);
    double open_s = since(t0);
    const tfm::SplitEntry& split = r.manifest().split("train");
    const int64_t stored = split.src_tokens() + split.tgt_tokens();
    std::printf("reader: %lld pairs, %lld stored tokens (+%lld EOS/BOS), 8 shards; written in %.1f s (%.0f tokens/s)\n",
                (long long)pairs, (long long)stored, (long long)(2 * pairs), write_s, double(stored) / write_s);
    std::printf("reader: open (manifest, SHA-256 of every shard, offsets index) %.2f s\n", open_s);

    tfm::Batch b;
    tfm::BatchInfo info;
    int64_t real = 0, padded = 0, batches = 0;
    t0 = Clock::now();
    while (r.next(b, &info) && info.epoch == 0) {
      real += b.src_tokens() + b.tgt_tokens();
      padded += b.size * (b.src_len + b.tgt_len);
      ++batches;
    }
    double epoch_s = since(t0);
    std::printf("reader: one epoch, batch_tokens %lld: %lld batches in %.2f s = %.1f M tokens/s (%.1f M padded "
                "slots/s, padding %.1f%%)\n",
                (long long)batch_tokens, (long long)batches, epoch_s, double(real) / epoch_s / 1e6,
                double(padded) / epoch_s / 1e6, 100.0 * double(padded - real) / double(padded));

    // One rank of four: it reads every window it has a batch in, but assembles a quarter.
    {
      tfm::ReaderOptions o4 = o;
      o4.verify = false;
      o4.rank = 0;
      o4.world = 4;
      tfm::DatasetReader r4(data, o4);
      int64_t real4 = 0;
      t0 = Clock::now();
      while (r4.next(b, &info) && info.epoch == 0) real4 += b.src_tokens() + b.tgt_tokens();
      double s4 = since(t0);
      std::printf("reader: rank 0 of 4, one epoch: %.2f s = %.1f M tokens/s for this rank\n", s4, double(real4) / s4 / 1e6);
    }

    // Resume cost: a reader restored deep into an epoch starts as fast as a fresh one.
    tfm::ReaderPosition p = r.position();
    o.verify = false;
    t0 = Clock::now();
    tfm::DatasetReader again(data, o, p);
    again.next(b);
    std::printf("reader: reopen at %s (no hash check) and first batch: %.2f s\n", p.to_string().c_str(), since(t0));
  }

  if (prepare) {
    // The demo end to end (generate, train SentencePiece, encode, write), then the same corpus
    // with that model, where only scanning, encoding and writing are timed.
    const std::string demo = dir + "/demo";
    auto t0 = Clock::now();
    if (run_prepare({"--demo", "--out", demo, "--threads", std::to_string(threads), "--quiet"}) != 0) return 1;
    double demo_s = since(t0);
    const std::string again = dir + "/demo-encode";
    t0 = Clock::now();
    if (run_prepare({"--src", demo + "/raw/train.en", "--tgt", demo + "/raw/train.de", "--out", again, "--spm-model",
                     demo + "/spm.model", "--threads", std::to_string(threads), "--quiet"}) != 0) {
      return 1;
    }
    double enc_s = since(t0);
    std::printf("prepare: demo end to end (52,000 pairs incl. SentencePiece training) %.2f s\n", demo_s);
    std::printf("prepare: 50,000 pairs with an existing model on %d threads: %.2f s = %.0f pairs/s\n", threads, enc_s,
                50000.0 / enc_s);
  }
  if (!keep) fs::remove_all(dir);
  return 0;
}
