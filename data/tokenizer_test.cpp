// The SentencePiece wrapper: tfm's special ids, encode without BOS/EOS, decode skipping specials,
// reproducible training, and errors that name the file.
#include "data/tokenizer.h"

#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include "data/test_helpers.h"
#include "kernels/core/check.h"

namespace sentencepiece::logging {
void SetMinLogLevel(int v);  // exported by libsentencepiece; see data/tokenizer.cpp
}

namespace tfm {
namespace {

using namespace testing_data;

Tokenizer train_on(const std::vector<std::string>& text, TokenizerTrainOptions o) {
  size_t i = 0;
  return Tokenizer::train([&](std::string& s) { return i < text.size() ? (s = text[i++], true) : false; }, o);
}

TEST(Tokenizer, SpecialIdsMatchBatch) {
  const Tokenizer& t = small_tokenizer();
  EXPECT_EQ(t.vocab_size(), 64);
  EXPECT_EQ(t.piece(0), "<pad>");
  EXPECT_EQ(t.piece(1), "<unk>");
  EXPECT_EQ(t.piece(2), "<s>");
  EXPECT_EQ(t.piece(3), "</s>");
}

TEST(Tokenizer, EncodeHasNoBosEosAndDecodeRoundTrips) {
  const Tokenizer& t = small_tokenizer();
  for (const std::string& s : sentences(50, 99)) {
    std::vector<int32_t> ids = t.encode(s);
    ASSERT_FALSE(ids.empty());
    for (int32_t id : ids) {
      EXPECT_GE(id, 1);  // unk allowed, pad/bos/eos never
      EXPECT_NE(id, 2);
      EXPECT_NE(id, 3);
      EXPECT_LT(id, 64);
    }
    EXPECT_EQ(t.decode(ids), s);
  }
  // Normalisation: runs of spaces collapse, leading/trailing spaces go.
  EXPECT_EQ(t.decode(t.encode("  kalo   mine ")), "kalo mine");
  // Specials are skipped when decoding, so padded rows of a batch decode cleanly.
  std::vector<int32_t> ids = t.encode("kalo mine");
  std::vector<int32_t> framed = {2};
  framed.insert(framed.end(), ids.begin(), ids.end());
  framed.push_back(3);
  framed.push_back(0);
  EXPECT_EQ(t.decode(framed), "kalo mine");
  EXPECT_THROW(t.decode(std::vector<int32_t>{64}), Error);
  EXPECT_THROW(t.decode(std::vector<int32_t>{-1}), Error);
}

TEST(Tokenizer, TrainingIsReproducible) {
  std::vector<std::string> text = sentences(300, 3);
  TokenizerTrainOptions o;
  o.vocab_size = 80;
  o.threads = 2;
  EXPECT_EQ(train_on(text, o).sha256(), train_on(text, o).sha256());
  o.model_type = "unigram";
  Tokenizer u1 = train_on(text, o), u2 = train_on(text, o);
  EXPECT_EQ(u1.sha256(), u2.sha256());
  EXPECT_EQ(u1.vocab_size(), 80);
  o.vocab_size = 90;
  EXPECT_NE(train_on(text, o).sha256(), u1.sha256());
}

TEST(Tokenizer, VocabularyTooLargeForCorpusIsAnError) {
  TokenizerTrainOptions o;
  o.vocab_size = 5000;
  o.model_type = "unigram";
  try {
    train_on({"ab ba", "ab ab"}, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SentencePiece training failed"), std::string::npos) << e.what();
  }
  o.model_type = "bpe";
  try {
    train_on({"ab ba", "ab ab"}, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SentencePiece training failed"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, TrainFromFilesEqualsTrainingOnTheirLines) {
  TempDir dir;
  std::vector<std::string> a = sentences(150, 21), b = sentences(150, 22);
  write_lines(dir / "a.txt", a);
  write_lines(dir / "b.txt", b);
  TokenizerTrainOptions o;
  o.vocab_size = 60;
  std::vector<std::string> joint = a;
  joint.insert(joint.end(), b.begin(), b.end());
  EXPECT_EQ(Tokenizer::train_files({dir / "a.txt", dir / "b.txt"}, o).sha256(), train_on(joint, o).sha256());
  try {
    Tokenizer::train_files({dir / "a.txt", dir / "missing.txt"}, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir / "missing.txt"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, SaveLoadKeepsBytesAndHash) {
  TempDir dir;
  const Tokenizer& t = small_tokenizer();
  t.save(dir / "m.model");
  Tokenizer u = Tokenizer::load(dir / "m.model");
  EXPECT_EQ(u.sha256(), t.sha256());
  EXPECT_EQ(u.model_bytes(), t.model_bytes());
  EXPECT_EQ(u.encode("kalo mine"), t.encode("kalo mine"));
}

TEST(Tokenizer, BadModelFilesAreRefusedByName) {
  TempDir dir;
  write_text(dir / "junk.model", "this is not a protobuf");
  try {
    Tokenizer::load(dir / "junk.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::load(dir / "missing.model"), Error);

  // A model with SentencePiece's default ids (unk 0, bos 1, eos 2, no pad) would mislabel tokens.
  std::vector<std::string> text = sentences(200, 5);
  size_t i = 0;
  struct It : sentencepiece::SentenceIterator {
    std::vector<std::string>* t;
    size_t* i;
    bool done() const override { return *i >= t->size(); }
    void Next() override { ++*i; }
    const std::string& value() const override { return (*t)[*i]; }
    sentencepiece::util::Status status() const override { return {}; }
  } it;
  it.t = &text;
  it.i = &i;
  std::string bytes;
  sentencepiece::logging::SetMinLogLevel(2);
  ASSERT_TRUE(sentencepiece::SentencePieceTrainer::Train({{"vocab_size", "50"}, {"model_type", "bpe"}}, &it, &bytes).ok());
  write_text(dir / "default-ids.model", bytes);
  try {
    Tokenizer::load(dir / "default-ids.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("default-ids.model"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("pad 0 unk 1 bos 2 eos 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tfm
