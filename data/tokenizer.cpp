#include "data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <memory>
#include <mutex>
#include <unordered_map>

#include "data/batch.h"
#include "data/files.h"
#include "data/sha256.h"
#include "data/text.h"
#include "kernels/core/check.h"

// Not in SentencePiece's public headers (it lives in common.h), but exported by the library in
// every release we know of: the minimum level of its training log (0 info … 3 fatal).
namespace sentencepiece::logging {
void SetMinLogLevel(int v);
}

namespace tfm {

namespace {

// Feeds training sentences from a callback.
class CallbackIterator : public sentencepiece::SentenceIterator {
 public:
  explicit CallbackIterator(const std::function<bool(std::string&)>& next) : next_(next) { Next(); }
  bool done() const override { return done_; }
  void Next() override { done_ = !next_(value_); }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::function<bool(std::string&)>& next_;
  std::string value_;
  bool done_ = false;
};

// SentencePiece's trainer keeps global state (seed, log level): one training at a time.
std::mutex& train_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

Tokenizer Tokenizer::train(const std::function<bool(std::string&)>& next, const TokenizerTrainOptions& o) {
  if (o.model_type != "bpe" && o.model_type != "unigram") {
    fail(cat("tokenizer: model type must be bpe or unigram, not '", o.model_type, "'"));
  }
  if (o.vocab_size < 5) fail(cat("tokenizer: vocabulary size ", o.vocab_size, " is too small"));
  std::unordered_map<std::string, std::string> args = {
      {"model_type", o.model_type},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"pad_id", std::to_string(kPadId)},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)},
      {"eos_id", std::to_string(kEosId)},
      {"num_threads", std::to_string(o.threads)},
      {"input_sentence_size", std::to_string(o.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"split_digits", o.split_digits ? "true" : "false"},
      // A vocabulary the corpus cannot fill is an error (with SentencePiece's reason), so the
      // model has exactly the size that was asked for.
      {"hard_vocab_limit", "true"},
  };
  std::string serialized;
  {
    std::lock_guard<std::mutex> lock(train_mutex());
    sentencepiece::SetRandomGeneratorSeed(o.seed);
    sentencepiece::logging::SetMinLogLevel(o.verbose ? 0 : 2);
    CallbackIterator it(next);
    auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &serialized);
    sentencepiece::logging::SetMinLogLevel(0);
    if (!status.ok()) fail(cat("SentencePiece training failed: ", status.ToString()));
  }
  return from_bytes(std::move(serialized), "the trained model");
}

Tokenizer Tokenizer::train_files(const std::vector<std::string>& files, const TokenizerTrainOptions& o) {
  std::vector<std::unique_ptr<LineReader>> readers;
  for (const auto& f : files) readers.push_back(std::make_unique<LineReader>(f));  // all opened first
  size_t k = 0;
  return train(
      [&](std::string& line) {
        for (; k < readers.size(); ++k) {
          while (readers[k]->next(line)) {
            if (!is_blank(line)) return true;
          }
        }
        return false;
      },
      o);
}

Tokenizer Tokenizer::load(const std::string& path) { return from_bytes(read_file(path), path); }

Tokenizer Tokenizer::from_bytes(std::string bytes, const std::string& name) {
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  auto status = sp->LoadFromSerializedProto(bytes);
  if (!status.ok()) fail(cat(name, ": not a SentencePiece model (", status.ToString(), ")"));
  // tfm's batches hard-code these ids; a model with other ids would silently mislabel tokens.
  if (sp->pad_id() != kPadId || sp->unk_id() != kUnkId || sp->bos_id() != kBosId || sp->eos_id() != kEosId) {
    fail(cat(name, ": special ids are pad ", sp->pad_id(), " unk ", sp->unk_id(), " bos ", sp->bos_id(),
             " eos ", sp->eos_id(), "; tfm needs pad 0 unk 1 bos 2 eos 3 (spm_train --pad_id=0 "
             "--unk_id=1 --bos_id=2 --eos_id=3)"));
  }
  Tokenizer t;
  t.sha256_ = sha256_hex(bytes);
  t.bytes_ = std::make_shared<const std::string>(std::move(bytes));
  t.sp_ = std::move(sp);
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  if (!status.ok()) fail(cat("SentencePiece encode failed: ", status.ToString()));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const int32_t* ids, int64_t n) const {
  std::vector<int> keep;
  keep.reserve(size_t(n));
  int64_t v = vocab_size();
  for (int64_t k = 0; k < n; ++k) {
    if (ids[k] < 0 || ids[k] >= v) fail(cat("decode: id ", ids[k], " outside the vocabulary [0, ", v, ")"));
    if (ids[k] == kPadId || ids[k] == kBosId || ids[k] == kEosId) continue;
    keep.push_back(ids[k]);
  }
  std::string text;
  auto status = sp_->Decode(keep, &text);
  if (!status.ok()) fail(cat("SentencePiece decode failed: ", status.ToString()));
  return text;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  return decode(ids.data(), int64_t(ids.size()));
}

std::string Tokenizer::piece(int32_t id) const {
  TFM_CHECK(id >= 0 && id < vocab_size(), "piece: id ", id, " outside the vocabulary");
  return sp_->IdToPiece(id);
}

int64_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }

void Tokenizer::save(const std::string& path) const { write_file_atomic(path, *bytes_); }

}  // namespace tfm
