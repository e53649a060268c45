// Decoding: the key/value cache against recomputing the whole prefix (post- and pre-norm, f32 and
// f64), greedy against beam 1, beam search against greedy and against exhaustive search, n-best
// order, the length limit, batching independence, and the scores against teacher forcing.
// Tiny random models (d_model 16), plus one trained for 100 steps on the copy task.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <random>

#include "tests/testing/testing.h"
#include "trainer/decode.h"
#include "trainer/train.h"

extern "C" void openblas_set_num_threads(int);

namespace tfm {
namespace {

// Every model in this binary is tiny: one thread is the fastest (a parallel region per op costs
// more than the op), and keeps f32 rounding the same from run to run.
class OneThread : public ::testing::Environment {
 public:
  void SetUp() override {
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
  }
};
const auto* const one_thread = ::testing::AddGlobalTestEnvironment(new OneThread);

using Sources = std::vector<std::vector<int32_t>>;

ModelConfig tiny_config(NormPlacement norm, EmbeddingSharing sharing, int64_t vocab = 13) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.d_model = 16;
  c.d_ff = 24;
  c.heads = 2;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.dropout = 0.3;  // must be off at inference: the comparisons below would see it
  c.attention_dropout = 0.3;
  c.relu_dropout = 0.3;
  c.norm = norm;
  c.sharing = sharing;
  return c;
}

// A model whose every parameter is uniform in [−a, a]: peaked, varied next-token distributions.
std::unique_ptr<Transformer> random_model(const ModelConfig& cfg, DType dtype, uint64_t seed,
                                          double a = 0.5) {
  auto model = std::make_unique<Transformer>(cfg);
  model->params().allocate(dtype);
  if (dtype == DType::f64) testing::fill_uniform<double>(model->params().values(), seed, -a, a);
  else testing::fill_uniform<float>(model->params().values(), seed, -a, a);
  return model;
}

// Ids in [4, vocab): no specials inside a source.
Sources random_sources(const std::vector<int>& lengths, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(4, int32_t(vocab) - 1);
  Sources out;
  for (int len : lengths) {
    std::vector<int32_t> s;
    for (int i = 0; i < len; ++i) s.push_back(id(rng));
    out.push_back(s);
  }
  return out;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = a.dtype == DType::f64 ? a.as<double>()[i] : a.as<float>()[i];
    double y = b.dtype == DType::f64 ? b.as<double>()[i] : b.as<float>()[i];
    m = std::max(m, std::abs(x - y));
  }
  return m;
}

std::vector<int64_t> limits(const Sources& sources, int64_t extra) {
  std::vector<int64_t> out;
  for (const auto& s : sources) out.push_back(int64_t(s.size()) + extra);
  return out;
}

// log P(tokens EOS | source) by teacher forcing through the training forward (no cache, no
// search): Transformer::evaluate's NLL of the single pair.
double teacher_forced_log_prob(Transformer& model, const std::vector<int32_t>& source,
                               const std::vector<int32_t>& tokens) {
  Context ctx;
  Arena arena;
  return -model.evaluate(ctx, arena, make_batch({source}, {tokens})).nll_sum;
}

void expect_same_hypotheses(const std::vector<std::vector<Hypothesis>>& a,
                            const std::vector<std::vector<Hypothesis>>& b, double tol,
                            const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t s = 0; s < a.size(); ++s) {
    ASSERT_EQ(a[s].size(), b[s].size()) << what << ": sentence " << s;
    for (size_t i = 0; i < a[s].size(); ++i) {
      EXPECT_EQ(a[s][i].tokens, b[s][i].tokens) << what << ": sentence " << s << " hyp " << i;
      // tol per unit of log-probability: rounding accumulates over the hypothesis' tokens.
      const double scale = std::max(1.0, std::abs(b[s][i].log_prob));
      EXPECT_NEAR(a[s][i].log_prob, b[s][i].log_prob, tol * scale) << what << ": sentence " << s;
      EXPECT_NEAR(a[s][i].score, b[s][i].score, tol * scale) << what << ": sentence " << s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The cache against recomputation.

struct CacheCase {
  NormPlacement norm;
  EmbeddingSharing sharing;
  DType dtype;
  double tol;
};

void PrintTo(const CacheCase& c, std::ostream* os) {
  *os << to_string(c.norm) << "-norm, sharing " << to_string(c.sharing) << ", "
      << dtype_name(c.dtype);
}

class CacheVsRecompute : public ::testing::TestWithParam<CacheCase> {};

// Step by step, with the reorders beam search does (permute, repeat, drop rows).
TEST_P(CacheVsRecompute, StepLogProbabilitiesAgreeThroughReorders) {
  const CacheCase c = GetParam();
  auto model = random_model(tiny_config(c.norm, c.sharing), c.dtype, 11);
  Context ctx;
  Arena arena_a, arena_b;
  const Sources sources = random_sources({3, 7, 1}, 13, 5);
  auto cached = make_step_model(*model, ctx, arena_a, sources, 2, 8, /*cached=*/true);
  auto reference = make_step_model(*model, ctx, arena_b, sources, 2, 8, /*cached=*/false);
  std::mt19937_64 rng(3);
  std::vector<int32_t> tokens(6, kBosId);
  // Row maps applied after steps 1..: a permutation that crosses sentences, repeats, a shrink.
  const std::vector<std::vector<int64_t>> reorders = {
      {1, 0, 2, 2, 5, 4}, {0, 0, 3, 2, 4, 5}, {5, 4, 3, 2, 1, 0}, {2, 3, 4}, {0, 0, 1, 2}};
  for (size_t step = 0; step < 7; ++step) {
    Tensor a = cached->step(tokens), b = reference->step(tokens);
    ASSERT_EQ(a.dim(0), int64_t(tokens.size()));
    ASSERT_EQ(a.dim(1), 13);
    EXPECT_LT(max_abs_diff(a, b), c.tol) << "step " << step;
    // Each row is a distribution.
    for (int64_t r = 0; r < a.dim(0); ++r) {
      double total = 0;
      for (int64_t v = 0; v < 13; ++v)
        total += std::exp(a.dtype == DType::f64 ? a.as<double>()[r * 13 + v]
                                                : double(a.as<float>()[r * 13 + v]));
      EXPECT_NEAR(total, 1.0, 1e-5);
    }
    if (step < reorders.size()) {
      cached->reorder(reorders[step]);
      reference->reorder(reorders[step]);
      tokens.resize(reorders[step].size());
    }
    for (int32_t& t : tokens) t = int32_t(std::uniform_int_distribution<int>(3, 12)(rng));
  }
}

// Whole searches: the same tokens and (to tol) the same log-probabilities and scores.
TEST_P(CacheVsRecompute, GreedyAndBeamSearchGiveTheSameHypotheses) {
  const CacheCase c = GetParam();
  auto model = random_model(tiny_config(c.norm, c.sharing), c.dtype, 21);
  Context ctx;
  Arena arena;
  const Sources sources = random_sources({4, 1, 6}, 13, 8);
  for (int64_t beam : {1, 3}) {
    DecodeOptions o;
    o.beam = beam;
    o.n_best = beam;
    o.max_extra_len = 4;
    o.use_cache = true;
    auto with_cache = decode_batch(*model, ctx, arena, sources, o);
    o.use_cache = false;
    auto without = decode_batch(*model, ctx, arena, sources, o);
    expect_same_hypotheses(with_cache, without, c.tol, "beam " + std::to_string(beam));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CacheVsRecompute,
    ::testing::Values(CacheCase{NormPlacement::post, EmbeddingSharing::all, DType::f32, 1e-5},
                      CacheCase{NormPlacement::pre, EmbeddingSharing::all, DType::f32, 1e-5},
                      CacheCase{NormPlacement::pre, EmbeddingSharing::none, DType::f64, 1e-11},
                      CacheCase{NormPlacement::post, EmbeddingSharing::tgt, DType::f64, 1e-11}),
    [](const auto& info) {
      return std::string(to_string(info.param.norm)) + "_" + to_string(info.param.sharing) +
             "_" + dtype_name(info.param.dtype);
    });

// ---------------------------------------------------------------------------------------------
// Search properties on a random model.

class Search : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = random_model(tiny_config(NormPlacement::post, EmbeddingSharing::all), DType::f32, 33);
  }
  std::vector<std::vector<Hypothesis>> decode(const Sources& s, const DecodeOptions& o) {
    return decode_batch(*model_, ctx_, arena_, s, o);
  }
  std::vector<std::vector<Hypothesis>> beam(const Sources& s, const DecodeOptions& o) {
    auto m = make_step_model(*model_, ctx_, arena_, s, o.beam, 64);
    return beam_search(*m, 13, limits(s, o.max_extra_len), o);
  }
  std::unique_ptr<Transformer> model_;
  Context ctx_;
  Arena arena_;
};

TEST_F(Search, BeamOfOneIsGreedy) {
  const Sources sources = random_sources({2, 5, 9, 3, 1}, 13, 1);
  for (double alpha : {0.0, 0.6, 1.5}) {
    DecodeOptions o;
    o.beam = 1;
    o.alpha = alpha;
    o.max_extra_len = 6;
    auto greedy = decode(sources, o);  // beam 1 → greedy_search
    auto beam1 = beam(sources, o);
    expect_same_hypotheses(greedy, beam1, 0.0, "alpha " + std::to_string(alpha));
  }
}

// Not a theorem of beam search, but what it is for: over many sentences the best of 4 beams is
// never worse than greedy's hypothesis under the model, by the search's score and by raw
// log-probability (α = 0).
TEST_F(Search, BeamScoresAtLeastGreedy) {
  const Sources sources = random_sources({1, 2, 3, 4, 5, 6, 7, 8, 2, 3, 4, 5}, 13, 2);
  int strictly_better = 0;
  for (double alpha : {0.0, 0.6}) {
    DecodeOptions o;
    o.alpha = alpha;
    o.max_extra_len = 5;
    o.beam = 1;
    auto greedy = decode(sources, o);
    o.beam = 4;
    auto beam4 = decode(sources, o);
    for (size_t s = 0; s < sources.size(); ++s) {
      ASSERT_EQ(beam4[s].size(), 1u);
      // 1e-5: f32 rounding differs between a batch of B rows (greedy) and of 4·B rows (beam).
      EXPECT_GE(beam4[s][0].score, greedy[s][0].score - 1e-5)
          << "alpha " << alpha << " sentence " << s;
      strictly_better += beam4[s][0].score > greedy[s][0].score + 1e-4;
    }
  }
  EXPECT_GT(strictly_better, 0) << "beam search never found anything better than greedy";
}

// The reported log-probability is the model's: teacher forcing the hypothesis through the
// training forward gives the same number; the score is it over the length penalty.
TEST_F(Search, ScoresAreTheModelsLogProbabilityOverTheLengthPenalty) {
  const Sources sources = random_sources({3, 6}, 13, 4);
  DecodeOptions o;
  o.beam = 3;
  o.n_best = 3;
  o.max_extra_len = 4;
  auto out = decode(sources, o);
  for (size_t s = 0; s < sources.size(); ++s)
    for (const Hypothesis& h : out[s]) {
      EXPECT_NEAR(h.log_prob, teacher_forced_log_prob(*model_, sources[s], h.tokens), 2e-5);
      EXPECT_NEAR(h.score, h.log_prob / length_penalty(int64_t(h.tokens.size()) + 1, 0.6), 1e-12);
      for (int32_t t : h.tokens) EXPECT_TRUE(t != kPadId && t != kBosId && t != kEosId) << t;
    }
  EXPECT_DOUBLE_EQ(length_penalty(5, 0.6), std::pow(10.0 / 6.0, 0.6));
  EXPECT_DOUBLE_EQ(length_penalty(7, 0.0), 1.0);
}

TEST_F(Search, NBestListsAreSortedAndDistinct) {
  const Sources sources = random_sources({2, 4, 7}, 13, 6);
  DecodeOptions o;
  o.beam = 5;
  o.n_best = 5;
  o.max_extra_len = 5;
  auto out = decode(sources, o);
  for (size_t s = 0; s < sources.size(); ++s) {
    ASSERT_EQ(out[s].size(), 5u) << "sentence " << s;
    for (size_t i = 1; i < out[s].size(); ++i) {
      EXPECT_GE(out[s][i - 1].score, out[s][i].score) << "sentence " << s << " rank " << i;
      for (size_t j = 0; j < i; ++j) EXPECT_NE(out[s][i].tokens, out[s][j].tokens);
    }
  }
  // The 1-best of the n-best list is the 1-best search's answer.
  o.n_best = 1;
  auto best = decode(sources, o);
  for (size_t s = 0; s < sources.size(); ++s) EXPECT_EQ(best[s][0].tokens, out[s][0].tokens);
}

TEST_F(Search, MaxLengthIsRespected) {
  const Sources sources = random_sources({0, 1, 3, 8}, 13, 7);
  for (int64_t extra : {0, 1, 3}) {
    for (int64_t b : {1, 4}) {
      DecodeOptions o;
      o.beam = b;
      o.n_best = b;
      o.max_extra_len = extra;
      auto out = decode(sources, o);
      bool reached = false;
      for (size_t s = 0; s < sources.size(); ++s)
        for (const Hypothesis& h : out[s]) {
          EXPECT_LE(h.tokens.size(), sources[s].size() + size_t(extra))
              << "beam " << b << " extra " << extra << " sentence " << s;
          reached = reached || h.tokens.size() == sources[s].size() + size_t(extra);
        }
      EXPECT_TRUE(reached) << "no hypothesis reached the limit: the test shows nothing";
    }
  }
}

// A batch of sentences of different lengths decodes exactly as each sentence alone: padding,
// source masks and finished sentences leaving the batch change nothing.
TEST_F(Search, BatchedEqualsOneAtATime) {
  const Sources sources = random_sources({1, 9, 4, 0, 6, 2}, 13, 9);
  for (int64_t b : {1, 4}) {
    DecodeOptions o;
    o.beam = b;
    o.n_best = b;
    o.max_extra_len = 5;
    auto together = decode(sources, o);
    std::vector<std::vector<Hypothesis>> alone;
    for (const auto& s : sources) alone.push_back(decode({s}, o)[0]);
    expect_same_hypotheses(together, alone, 1e-5, "beam " + std::to_string(b));
  }
}

// Early stopping only skips work: the same n-best as running every sentence to k finished.
TEST_F(Search, EarlyStoppingNeverChangesTheResult) {
  const Sources sources = random_sources({2, 5, 3, 7}, 13, 10);
  for (double alpha : {0.0, 0.6}) {
    DecodeOptions o;
    o.beam = 4;
    o.n_best = 2;
    o.alpha = alpha;
    o.max_extra_len = 6;
    auto early = decode(sources, o);
    o.early_stop = false;
    auto full = decode(sources, o);
    expect_same_hypotheses(early, full, 0.0, "alpha " + std::to_string(alpha));
  }
}

// With a beam as wide as the hypothesis space, beam search is exhaustive: its n-best list is the
// true n-best of every sequence up to the limit, scored independently by teacher forcing.
TEST(ExhaustiveSearch, WideBeamFindsTheTrueNBest) {
  // Vocabulary: pad, unk, bos, eos, 4, 5 → generable tokens unk, 4, 5 (3 choices per position).
  auto model = random_model(tiny_config(NormPlacement::pre, EmbeddingSharing::all, 6), DType::f64, 5);
  Context ctx;
  Arena arena;
  const std::vector<int32_t> source = {4, 5};
  const int64_t limit = 3;  // |source| + max_extra_len 1
  std::vector<std::vector<int32_t>> all = {{}};
  for (int64_t len = 1, begin = 0; len <= limit; ++len) {
    const size_t end = all.size();
    for (size_t i = size_t(begin); i < end; ++i)
      for (int32_t v : {kUnkId, 4, 5}) {
        auto y = all[i];
        y.push_back(v);
        all.push_back(y);
      }
    begin = int64_t(end);
  }
  ASSERT_EQ(all.size(), 40u);  // 1 + 3 + 9 + 27
  for (double alpha : {0.0, 0.6}) {
    std::vector<std::pair<double, std::vector<int32_t>>> truth;
    for (const auto& y : all)
      truth.push_back({teacher_forced_log_prob(*model, source, y) /
                           length_penalty(int64_t(y.size()) + 1, alpha), y});
    std::stable_sort(truth.begin(), truth.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (bool early : {true, false}) {
      DecodeOptions o;
      o.beam = 40;
      o.n_best = 6;
      o.alpha = alpha;
      o.max_extra_len = 1;
      o.early_stop = early;
      auto out = decode_batch(*model, ctx, arena, {source}, o);
      ASSERT_EQ(out[0].size(), 6u);
      for (size_t i = 0; i < 6; ++i) {
        EXPECT_EQ(out[0][i].tokens, truth[i].second) << "alpha " << alpha << " rank " << i;
        EXPECT_NEAR(out[0][i].score, truth[i].first, 1e-10) << "alpha " << alpha << " rank " << i;
      }
    }
  }
}

TEST(DecodeErrors, NameTheOptionOrTheRow) {
  auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto opts = [](int64_t beam, int64_t n_best, double alpha, int64_t extra) {
    DecodeOptions o;
    o.beam = beam;
    o.n_best = n_best;
    o.alpha = alpha;
    o.max_extra_len = extra;
    return o;
  };
  expect_error([&] { opts(0, 1, 0.6, 50).validate(); }, "--beam");
  expect_error([&] { opts(2, 3, 0.6, 50).validate(); }, "--n-best");
  expect_error([&] { opts(4, 1, -1, 50).validate(); }, "--alpha");
  expect_error([&] { opts(4, 1, 0.6, -2).validate(); }, "--max-extra-len");

  auto model = random_model(tiny_config(NormPlacement::post, EmbeddingSharing::all), DType::f32, 1);
  Context ctx;
  Arena arena;
  auto m = make_step_model(*model, ctx, arena, {{4, 5}}, 2, 1);
  expect_error([&] { m->reorder({0, 2}); }, "row 1");
  m->step({kBosId, kBosId});
  expect_error([&] { m->step({4, 4}); }, "capacity");
}

// ---------------------------------------------------------------------------------------------
// A model trained for 100 steps on the copy task: non-trivial outputs (it ends
// sentences, repeats source tokens), where cache and recomputation must still agree and beam
// search must still beat greedy.
TEST(TrainedCopyModel, CacheAgreesAndOutputsCopyTheSource) {
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("tfm-decode-test-copy-" + std::to_string(::getpid()))).string();
  const char* argv[] = {"train", "--synthetic", "copy", "--vocab-size", "12", "--min-len", "2",
                        "--max-len", "6", "--d-model", "32", "--d-ff", "64", "--heads", "2",
                        "--layers", "1", "--batch-tokens", "1024", "--warmup", "40", "--lr", "1",
                        "--dropout", "0", "--steps", "100", "--threads", "1",
                        "--out", out.c_str()};
  TrainOptions opt;
  ASSERT_TRUE(parse_train_options(int(std::size(argv)), const_cast<char**>(argv), opt));
  Trainer trainer(opt, make_synthetic_source(opt));
  while (trainer.steps_done() < opt.steps) trainer.step();
  Transformer& model = trainer.model();
  std::filesystem::remove_all(out);

  const Sources sources = random_sources({2, 3, 4, 5, 6, 3, 4, 5}, 12, 12);
  Context ctx;
  Arena arena;
  DecodeOptions o;
  o.beam = 4;
  o.n_best = 4;
  auto cached = decode_batch(model, ctx, arena, sources, o);
  o.use_cache = false;
  expect_same_hypotheses(cached, decode_batch(model, ctx, arena, sources, o), 1e-5, "trained");
  o.use_cache = true;
  o.beam = o.n_best = 1;
  auto greedy = decode_batch(model, ctx, arena, sources, o);
  int copied = 0;
  for (size_t s = 0; s < sources.size(); ++s) {
    EXPECT_GE(cached[s][0].score, greedy[s][0].score - 1e-5) << "sentence " << s;
    copied += cached[s][0].tokens == sources[s];
  }
  // A copy ends with the right EOS, far short of the +50 limit: it learned to stop.
  EXPECT_GE(copied, 4) << "after 100 steps most sources should be copied exactly";
}

}  // namespace
}  // namespace tfm
