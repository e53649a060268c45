// Tokenizer: a thin wrapper over a SentencePiece model with tfm's fixed special ids
// (data/batch.h): pad 0, unk 1, bos 2, eos 3. encode() returns ids without BOS/EOS (the reader
// adds them); decode() skips pad/bos/eos. A Tokenizer is cheap to copy (the model is shared) and
// encode/decode may be called from many threads at once.
//
// Training is deterministic given the sentences and the options: SentencePiece's random seed is
// fixed (`seed`) and so is its thread count (`threads`, stored in the model; the unigram trainer's
// result depends on it), so the same corpus gives a byte-identical model — and SHA-256 — on any
// machine.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace tfm {

struct TokenizerTrainOptions {
  int64_t vocab_size = 8000;
  std::string model_type = "bpe";     // bpe | unigram
  double character_coverage = 0.9995;  // SentencePiece's default; 1.0 keeps every character
  int64_t input_sentence_size = 0;     // sample this many sentences for training (0: all)
  bool split_digits = false;           // every digit its own piece
  uint32_t seed = 1;
  int threads = 8;                     // fixed by default so models agree across machines
  bool verbose = false;                // SentencePiece's training log on stderr
};

class Tokenizer {
 public:
  // Trains on the sentences `next` yields (it returns false when done); throws tfm::Error with
  // SentencePiece's reason (e.g. a vocabulary too large for the corpus).
  static Tokenizer train(const std::function<bool(std::string&)>& next, const TokenizerTrainOptions& options);
  // Trains on every non-blank line of the files, in order (e.g. {"train.en", "train.de"} for a
  // joint source+target vocabulary). A missing file is an error naming it.
  static Tokenizer train_files(const std::vector<std::string>& files, const TokenizerTrainOptions& options);
  // Loads a model file; the model must use tfm's special ids. Errors name the file.
  static Tokenizer load(const std::string& path);
  // From the bytes of a model file; `name` is used in error messages.
  static Tokenizer from_bytes(std::string bytes, const std::string& name);

  std::vector<int32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string decode(const int32_t* ids, int64_t n) const;
  std::string piece(int32_t id) const;
  int64_t vocab_size() const;

  const std::string& model_bytes() const { return *bytes_; }  // the .model file's content
  const std::string& sha256() const { return sha256_; }       // of model_bytes()
  void save(const std::string& path) const;                   // atomically

 private:
  Tokenizer() = default;
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
  std::shared_ptr<const std::string> bytes_;
  std::string sha256_;
};

}  // namespace tfm
