// Evaluation of a split: teacher-forced loss equals the per-pair losses summed, hypotheses and
// references come back in split order and equal decoding each sentence alone, BLEU is the corpus
// BLEU of those strings, --max-sentences takes a prefix, and data-parallel parts add up.
#include <gtest/gtest.h>

#include <cmath>

#include "data/id_dataset.h"
#include "data/test_helpers.h"
#include "tests/testing/testing.h"
#include "trainer/evaluate.h"

namespace tfm {
namespace {

using testing_data::small_tokenizer;
using testing_data::TempDir;

std::vector<int32_t> src_of(int64_t i) {
  std::vector<int32_t> v;
  for (int64_t k = 0; k < 1 + (i * 7) % 9; ++k) v.push_back(int32_t(4 + (i * 13 + k * 5) % 60));
  return v;
}
std::vector<int32_t> tgt_of(int64_t i) {
  std::vector<int32_t> v = src_of(i);
  if (i % 3 == 0) v.push_back(int32_t(4 + i % 60));
  return v;
}

constexpr int64_t kValid = 23;

const std::string& dataset() {
  static TempDir dir;
  static bool written = [] {
    auto pair = [](int64_t i, std::vector<int32_t>& s, std::vector<int32_t>& t) {
      s = src_of(i);
      t = tgt_of(i);
    };
    write_id_dataset(dir.str(), small_tokenizer(), {{"train", 8, 1, pair}, {"valid", kValid, 2, pair}});
    return true;
  }();
  (void)written;
  static std::string path = dir.str();
  return path;
}

ReaderOptions valid_options(int64_t batch_tokens, int rank = 0, int world = 1) {
  ReaderOptions o;
  o.split = "valid";
  o.shuffle = false;
  o.batch_tokens = batch_tokens;
  o.rank = rank;
  o.world = world;
  return o;
}

std::unique_ptr<Transformer> random_model(int64_t vocab) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.d_model = 16;
  c.d_ff = 24;
  c.heads = 2;
  c.encoder_layers = c.decoder_layers = 1;
  auto m = std::make_unique<Transformer>(c);
  m->params().allocate(DType::f32);
  testing::fill_uniform<float>(m->params().values(), 17, -0.4, 0.4);
  return m;
}

EvalOptions eval_options() {
  EvalOptions o;
  o.decode.beam = 3;
  o.decode.max_extra_len = 4;
  o.decode_sentences = 5;
  return o;
}

TEST(Evaluate, MatchesPerSentenceLossAndDecodingInSplitOrder) {
  const Tokenizer& tok = small_tokenizer();
  auto model = random_model(tok.vocab_size());
  Context ctx;
  Arena arena;
  DatasetReader reader(dataset(), valid_options(96));
  const EvalOptions o = eval_options();
  const EvalResult r = evaluate_split(*model, ctx, arena, reader, o);

  ASSERT_EQ(r.sentences, kValid);
  ASSERT_EQ(r.hypotheses.size(), size_t(kValid));
  LossStats expected;
  std::vector<std::string> hyps, refs;
  for (int64_t i = 0; i < kValid; ++i) {
    EXPECT_EQ(r.examples[size_t(i)], i);
    expected += model->evaluate(ctx, arena, make_batch({src_of(i)}, {tgt_of(i)}));
    auto alone = decode_batch(*model, ctx, arena, {src_of(i)}, o.decode);
    hyps.push_back(tok.decode(alone[0][0].tokens));
    refs.push_back(tok.decode(tgt_of(i)));
    EXPECT_EQ(r.hypotheses[size_t(i)], hyps.back()) << "sentence " << i;
    EXPECT_EQ(r.references[size_t(i)], refs.back()) << "sentence " << i;
  }
  EXPECT_EQ(r.loss.tokens, expected.tokens);
  EXPECT_EQ(r.loss.correct, expected.correct);
  EXPECT_NEAR(r.loss.loss_sum, expected.loss_sum, 1e-4 * expected.loss_sum);
  EXPECT_NEAR(r.loss.nll_sum, expected.nll_sum, 1e-4 * expected.nll_sum);
  EXPECT_NEAR(r.perplexity(), std::exp(expected.nll_sum / double(expected.tokens)), 1e-3);
  const std::vector<std::vector<std::string>> ref_sets = {refs};
  EXPECT_EQ(r.bleu_stats, bleu::corpus_stats(hyps, ref_sets));
  EXPECT_DOUBLE_EQ(r.bleu().score, bleu::corpus_bleu(hyps, ref_sets).score);
  EXPECT_GT(r.bleu_stats.sys_len, 0);
}

TEST(Evaluate, MaxSentencesTakesAPrefixOfTheSplit) {
  auto model = random_model(small_tokenizer().vocab_size());
  Context ctx;
  Arena arena;
  EvalOptions o = eval_options();
  DatasetReader all_reader(dataset(), valid_options(96));
  const EvalResult all = evaluate_split(*model, ctx, arena, all_reader, o);
  o.max_sentences = 7;  // batches of a few sentences: the limit falls inside the pass
  DatasetReader reader(dataset(), valid_options(96));
  const EvalResult part = evaluate_split(*model, ctx, arena, reader, o);
  ASSERT_EQ(part.sentences, 7);
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(part.examples[i], int64_t(i));
    EXPECT_EQ(part.hypotheses[i], all.hypotheses[i]);
  }
  LossStats expected;
  for (int64_t i = 0; i < 7; ++i)
    expected += model->evaluate(ctx, arena, make_batch({src_of(i)}, {tgt_of(i)}));
  EXPECT_EQ(part.loss.tokens, expected.tokens);
}

// Two data-parallel ranks see disjoint parts; their sums are the whole split's.
TEST(Evaluate, DataParallelPartsAddUp) {
  auto model = random_model(small_tokenizer().vocab_size());
  Context ctx;
  Arena arena;
  const EvalOptions o = eval_options();
  DatasetReader whole_reader(dataset(), valid_options(96));
  const EvalResult whole = evaluate_split(*model, ctx, arena, whole_reader, o);
  LossStats sum;
  bleu::BleuStats stats;
  std::vector<int64_t> seen;
  for (int rank = 0; rank < 2; ++rank) {
    DatasetReader reader(dataset(), valid_options(96, rank, 2));
    const EvalResult part = evaluate_split(*model, ctx, arena, reader, o);
    EXPECT_GT(part.sentences, 0) << "rank " << rank;
    sum += part.loss;
    stats += part.bleu_stats;
    seen.insert(seen.end(), part.examples.begin(), part.examples.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, whole.examples);
  EXPECT_EQ(sum.tokens, whole.loss.tokens);
  EXPECT_NEAR(sum.nll_sum, whole.loss.nll_sum, 1e-4 * whole.loss.nll_sum);
  EXPECT_EQ(stats, whole.bleu_stats);
}

TEST(Evaluate, LossOnlyAndVocabularyMismatch) {
  Context ctx;
  Arena arena;
  EvalOptions o = eval_options();
  o.bleu = false;
  auto model = random_model(small_tokenizer().vocab_size());
  DatasetReader reader(dataset(), valid_options(4096));
  const EvalResult r = evaluate_split(*model, ctx, arena, reader, o);
  EXPECT_EQ(r.sentences, kValid);
  EXPECT_EQ(r.bleu_stats, bleu::BleuStats{});
  EXPECT_TRUE(r.hypotheses[0].empty());

  auto wrong = random_model(small_tokenizer().vocab_size() + 1);
  DatasetReader reader2(dataset(), valid_options(4096));
  try {
    evaluate_split(*wrong, ctx, arena, reader2, o);
    ADD_FAILURE() << "a vocabulary mismatch must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tfm
