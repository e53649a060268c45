// `tfm prepare`: parallel text → SentencePiece model + HDF5 shards + manifest (DESIGN.md, "Data").
//
//   tfm prepare --src train.en --tgt train.de --out DIR [--valid-src … --valid-tgt …]
//               [--test-src … --test-tgt …] [--vocab-size 8000] [--shards 4] [--max-len 256] …
//   tfm prepare --tsv train.tsv --out DIR           (source TAB target per line)
//   tfm prepare --demo --out DIR                    (the bundled corpus, data/demo.h)
//
// --demo writes DIR/raw/{train,valid,test}.{en,de} and prepares them with its own defaults unless
// given: vocab 320, character coverage 1.0, digits split, 10,000 sentences sampled for
// SentencePiece, 2 shards, max-len 64.
//
// Steps: scan every input (line counts agree, UTF-8 valid, exactly one TAB per --tsv line, blank
// sides noted with file:line), train a joint SentencePiece model on the train split (or take
// --spm-model), encode on --threads threads, write each split as N shards in file order (shard k
// holds the k-th contiguous run of pairs; the reader shuffles), and write DIR/manifest.json last.
// Blank sides are dropped and reported (an error under --strict); train pairs with more than
// --max-len tokens on either side are dropped and counted (valid/test keep every pair, so scores
// stay comparable). Invalid UTF-8, mismatched line counts and missing files are always errors.
//
// Re-running: DIR/manifest.json records a fingerprint of the inputs' contents and of every option
// that affects the output. Running the same prepare again is a no-op (exit 0, "nothing to do");
// an output directory holding any other dataset (or pieces of one) is refused unless --force,
// which deletes the old manifest first and then the old files.
//
// Exit status: 0 done (or nothing to do), 1 bad data or I/O error (the message names file and
// line, or shard), 2 bad command line (the message names the option).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace tfm {

struct PrepareInput {
  std::string split;     // train, valid or test
  std::string src, tgt;  // parallel files, line i ↔ line i …
  std::string tsv;       // … or one file of "source<TAB>target" lines
};

struct PrepareConfig {
  std::vector<PrepareInput> inputs;  // train first
  std::string out;
  int64_t vocab_size = 8000;
  std::string model_type = "bpe";
  double character_coverage = 0.9995;
  int64_t spm_sentences = 2000000;  // sentences sampled to train SentencePiece (0: all)
  bool split_digits = false;
  uint32_t seed = 1;
  int spm_threads = 8;
  std::string spm_model;  // use this model instead of training one
  int64_t shards = 4;
  int64_t max_len = 256;  // tokens, either side, train split; 0: no limit
  bool strict = false;
  bool force = false;
  int threads = 1;
  bool quiet = false;  // no progress lines
};

struct SplitReport {
  std::string name;
  int64_t lines = 0, kept = 0, dropped_empty = 0, dropped_too_long = 0;
  int64_t src_tokens = 0, tgt_tokens = 0, shards = 0;
};

struct PrepareReport {
  bool nothing_to_do = false;  // DIR already held this exact dataset
  std::vector<SplitReport> splits;
  int64_t vocab_size = 0;
  double seconds = 0;
};

// The whole step; progress and warnings go to `log`. Throws tfm::Error on bad data.
PrepareReport prepare(const PrepareConfig& config, std::ostream& log);
// Writes the demo corpus's raw text into DIR/raw and prepares it (same rules as above).
PrepareReport prepare_demo(PrepareConfig config, std::ostream& log);

// The command: argv[0] is "prepare". Prints the summary to `out`, progress and errors to `err`.
int prepare_main(int argc, char** argv, std::ostream& out, std::ostream& err);
int prepare_main(int argc, char** argv);  // std::cout, std::cerr

}  // namespace tfm
