// Tests of the label-smoothed cross-entropy CPU twin: loss, nll and lse against DESIGN.md's
// formula evaluated naively in double; smoothing 0 gives loss == nll; ignored rows are zero with
// zero gradient; gradient rows sum to zero and match finite differences; large logits stay
// finite; float agrees with double; threads do not change results; bad targets and arguments
// throw tfm::Error naming what was wrong. Vocabulary-parallel (tensor parallelism): per-block
// partial stats combined equal the full forward, per-block backward equals the full gradient's
// columns.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <algorithm>
#include <vector>

#include "kernels/cross_entropy/cross_entropy.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

constexpr int32_t kIgnore = -1;

// Targets in [0, V) with every `ignore_every`-th position (from 2) set to ignore_index.
Buffer make_targets(int64_t N, int64_t V, uint64_t seed, int64_t ignore_every, int32_t ignore) {
  Buffer t(DType::i32, {N});
  std::mt19937 rng{uint32_t(seed)};
  for (int64_t n = 0; n < N; ++n)
    t.as<int32_t>()[n] = (ignore_every && n % ignore_every == 2) ? ignore
                                                                 : int32_t(rng() % uint32_t(V));
  return t;
}

// DESIGN.md's definition, written out: lp = x − log Σ exp(x), no tricks (inputs are small).
struct Naive {
  std::vector<double> loss, nll, lse;
};
template <class T>
Naive naive_cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore,
                          double eps) {
  const int64_t N = logits.dim(0), V = logits.dim(1);
  Naive r{std::vector<double>(size_t(N)), std::vector<double>(size_t(N)),
          std::vector<double>(size_t(N))};
  for (int64_t n = 0; n < N; ++n) {
    const T* x = logits.as<T>() + n * V;
    double sum = 0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(x[v]));
    double log_z = std::log(sum);
    r.lse[size_t(n)] = log_z;
    int32_t y = targets.as<int32_t>()[n];
    if (y == ignore) continue;
    double mean_neg_lp = 0;
    for (int64_t v = 0; v < V; ++v) mean_neg_lp += -(double(x[v]) - log_z) / double(V);
    r.nll[size_t(n)] = -(double(x[y]) - log_z);
    r.loss[size_t(n)] = (1 - eps) * r.nll[size_t(n)] + eps * mean_neg_lp;
  }
  return r;
}

template <class T>
struct Outputs {
  Buffer loss, nll, lse;
  explicit Outputs(int64_t N)
      : loss(dtype_of<T>(), {N}), nll(dtype_of<T>(), {N}), lse(dtype_of<T>(), {N}) {
    testing::poison(loss);
    testing::poison(nll);
    testing::poison(lse);
  }
};

template <class T>
void check_against_formula(double tolerance) {
  Context ctx = testing::cpu_context();
  for (auto [N, V] : {std::pair<int64_t, int64_t>{1, 1}, {13, 11}, {40, 257}})
    for (double eps : {0.0, 0.1, 1.0}) {
      Buffer logits = testing::random_buffer<T>({N, V}, uint64_t(N * V), -4.0, 4.0);
      Buffer targets = make_targets(N, V, 3, 5, kIgnore);
      Outputs<T> out(N);
      cross_entropy_forward(ctx, logits, targets, kIgnore, eps, out.loss, out.nll, out.lse);
      Naive want = naive_cross_entropy<T>(logits, targets, kIgnore, eps);
      for (int64_t n = 0; n < N; ++n) {
        auto close = [&](double got, double expected, const char* what) {
          ASSERT_NEAR(got, expected, tolerance * std::max(1.0, std::abs(expected)))
              << what << " row " << n << " N=" << N << " V=" << V << " eps=" << eps;
        };
        close(out.loss.template as<T>()[n], want.loss[size_t(n)], "loss");
        close(out.nll.template as<T>()[n], want.nll[size_t(n)], "nll");
        close(out.lse.template as<T>()[n], want.lse[size_t(n)], "lse");
      }
    }
}

TEST(CrossEntropy, ForwardMatchesTheFormulaInDouble) { check_against_formula<double>(1e-13); }
TEST(CrossEntropy, ForwardMatchesTheFormulaInFloat) { check_against_formula<float>(1e-5); }

TEST(CrossEntropy, NllIsMinusLogSoftmaxOfTheGoldClassAndEqualsLossWithoutSmoothing) {
  Context ctx = testing::cpu_context();
  const int64_t N = 9, V = 6;
  Buffer logits = testing::random_buffer<double>({N, V}, 4, -3.0, 3.0);
  Buffer targets = make_targets(N, V, 5, 0, kIgnore);
  Outputs<double> out(N);
  cross_entropy_forward(ctx, logits, targets, kIgnore, 0.0, out.loss, out.nll, out.lse);
  for (int64_t n = 0; n < N; ++n) {
    const double* x = logits.as<double>() + n * V;
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(x[v]);
    double p_gold = std::exp(x[targets.as<int32_t>()[n]]) / z;
    EXPECT_NEAR(out.nll.as<double>()[n], -std::log(p_gold), 1e-14) << "row " << n;
    EXPECT_EQ(out.loss.as<double>()[n], out.nll.as<double>()[n]) << "row " << n;
  }
}

TEST(CrossEntropy, IgnoredRowsHaveZeroLossAndZeroGradient) {
  Context ctx = testing::cpu_context();
  const int64_t N = 12, V = 7;
  // ignore_index both outside the vocabulary (-1) and inside it (0, a pad id): rows whose
  // target equals it are ignored either way.
  for (int32_t ignore : {kIgnore, 0}) {
    Buffer logits = testing::random_buffer<float>({N, V}, 6);
    Buffer targets = make_targets(N, V, 7, 3, ignore);
    Outputs<float> out(N);
    cross_entropy_forward(ctx, logits, targets, ignore, 0.1, out.loss, out.nll, out.lse);
    Buffer dlogits(DType::f32, {N, V});
    testing::poison(dlogits);
    cross_entropy_backward(ctx, logits, targets, out.lse, ignore, 0.1, 1.0, dlogits);
    int ignored = 0;
    for (int64_t n = 0; n < N; ++n) {
      bool is_ignored = targets.as<int32_t>()[n] == ignore;
      ignored += is_ignored;
      EXPECT_TRUE(std::isfinite(out.lse.as<float>()[n])) << "row " << n;
      if (is_ignored) {
        EXPECT_EQ(out.loss.as<float>()[n], 0.0f) << "row " << n;
        EXPECT_EQ(out.nll.as<float>()[n], 0.0f) << "row " << n;
        for (int64_t v = 0; v < V; ++v) EXPECT_EQ(dlogits.as<float>()[n * V + v], 0.0f);
      } else {
        EXPECT_GT(out.loss.as<float>()[n], 0.0f) << "row " << n;
      }
    }
    EXPECT_GE(ignored, 4) << "ignore_index " << ignore;
  }
}

TEST(CrossEntropy, GradientRowsSumToZeroAndMatchFiniteDifferences) {
  Context ctx = testing::cpu_context();
  const int64_t N = 10, V = 9;
  const double grad_scale = 0.37;
  for (double eps : {0.0, 0.1}) {
    Buffer logits = testing::random_buffer<double>({N, V}, 8, -3.0, 3.0);
    Buffer targets = make_targets(N, V, 9, 4, kIgnore);
    Outputs<double> out(N);
    auto loss = [&] {
      cross_entropy_forward(ctx, logits, targets, kIgnore, eps, out.loss, out.nll, out.lse);
      double s = 0;
      for (int64_t n = 0; n < N; ++n) s += out.loss.as<double>()[n] * grad_scale;
      return s;
    };
    loss();
    Buffer dlogits(DType::f64, {N, V});
    testing::poison(dlogits);
    cross_entropy_backward(ctx, logits, targets, out.lse, kIgnore, eps, grad_scale, dlogits);
    for (int64_t n = 0; n < N; ++n) {
      if (targets.as<int32_t>()[n] == kIgnore) continue;
      double row = 0;
      for (int64_t v = 0; v < V; ++v) row += dlogits.as<double>()[n * V + v];
      EXPECT_NEAR(row, 0.0, 1e-14) << "row " << n << " eps " << eps;
    }
    EXPECT_LE(testing::gradient_error(dlogits, testing::numeric_gradient(logits, loss), 1e-3),
              1e-6) << "eps " << eps;
  }
}

TEST(CrossEntropy, BackwardMayOverwriteTheLogits) {
  Context ctx = testing::cpu_context();
  const int64_t N = 6, V = 33;
  Buffer logits = testing::random_buffer<float>({N, V}, 10);
  Buffer targets = make_targets(N, V, 11, 4, kIgnore);
  Outputs<float> out(N);
  cross_entropy_forward(ctx, logits, targets, kIgnore, 0.1, out.loss, out.nll, out.lse);
  Buffer separate(DType::f32, {N, V});
  cross_entropy_backward(ctx, logits, targets, out.lse, kIgnore, 0.1, 0.5, separate);
  cross_entropy_backward(ctx, logits, targets, out.lse, kIgnore, 0.1, 0.5, logits);
  EXPECT_EQ(std::memcmp(separate.tensor().data, logits.tensor().data, logits.tensor().bytes()), 0);
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  // Shifting a row by a constant changes nothing in exact arithmetic; without max-subtraction,
  // exp(x) overflows (float past 88, double past 709).
  Context ctx = testing::cpu_context();
  const int64_t N = 5, V = 17;
  Buffer base = testing::random_buffer<double>({N, V}, 12, -3.0, 3.0);
  Buffer targets = make_targets(N, V, 13, 0, kIgnore);
  Outputs<double> want(N);
  cross_entropy_forward(ctx, base, targets, kIgnore, 0.1, want.loss, want.nll, want.lse);

  Buffer shifted_d(DType::f64, {N, V});
  Buffer shifted_f(DType::f32, {N, V});
  for (int64_t i = 0; i < N * V; ++i) {
    shifted_d.as<double>()[i] = base.as<double>()[i] + 5000.0;
    shifted_f.as<float>()[i] = float(base.as<double>()[i] + 200.0);
  }
  Outputs<double> got_d(N);
  Outputs<float> got_f(N);
  cross_entropy_forward(ctx, shifted_d, targets, kIgnore, 0.1, got_d.loss, got_d.nll, got_d.lse);
  cross_entropy_forward(ctx, shifted_f, targets, kIgnore, 0.1, got_f.loss, got_f.nll, got_f.lse);
  Buffer dlogits(DType::f32, {N, V});
  cross_entropy_backward(ctx, shifted_f, targets, got_f.lse, kIgnore, 0.1, 1.0, dlogits);
  for (int64_t n = 0; n < N; ++n) {
    double w = want.loss.as<double>()[n];
    EXPECT_NEAR(got_d.loss.as<double>()[n], w, 1e-10 * std::max(1.0, w)) << "row " << n;
    // float holds x + 200 to ~1.5e-5, which bounds the agreement.
    EXPECT_NEAR(got_f.loss.as<float>()[n], w, 1e-4 * std::max(1.0, w)) << "row " << n;
    EXPECT_NEAR(got_f.lse.as<float>()[n], want.lse.as<double>()[n] + 200.0, 1e-3) << "row " << n;
  }
  for (int64_t i = 0; i < N * V; ++i) ASSERT_TRUE(std::isfinite(dlogits.as<float>()[i])) << i;
}

TEST(CrossEntropy, FloatAgreesWithDouble) {
  Context ctx = testing::cpu_context();
  const int64_t N = 31, V = 1000;
  Buffer ld = testing::random_buffer<double>({N, V}, 14, -6.0, 6.0);
  Buffer lf(DType::f32, {N, V});
  for (int64_t i = 0; i < N * V; ++i) {
    lf.as<float>()[i] = float(ld.as<double>()[i]);
    ld.as<double>()[i] = double(lf.as<float>()[i]);
  }
  Buffer targets = make_targets(N, V, 15, 6, kIgnore);
  Outputs<double> od(N);
  Outputs<float> of(N);
  cross_entropy_forward(ctx, ld, targets, kIgnore, 0.1, od.loss, od.nll, od.lse);
  cross_entropy_forward(ctx, lf, targets, kIgnore, 0.1, of.loss, of.nll, of.lse);
  EXPECT_LE(testing::max_rel_error(of.loss, od.loss, 1.0), 1e-5);
  EXPECT_LE(testing::max_rel_error(of.nll, od.nll, 1.0), 1e-5);
  EXPECT_LE(testing::max_rel_error(of.lse, od.lse, 1.0), 1e-5);
  Buffer gd(DType::f64, {N, V}), gf(DType::f32, {N, V});
  cross_entropy_backward(ctx, ld, targets, od.lse, kIgnore, 0.1, 1.0 / N, gd);
  cross_entropy_backward(ctx, lf, targets, of.lse, kIgnore, 0.1, 1.0 / N, gf);
  // Gradients are ≤ 1/N in size: compare against that scale.
  EXPECT_LE(testing::max_abs_error(gf, gd), 1e-5 / N);
}

TEST(CrossEntropy, ResultsDoNotDependOnTheThreadCount) {
  Context ctx = testing::cpu_context();
  const int64_t N = 131, V = 301;  // over 2^15 logits: the twin runs rows in parallel
  Buffer logits = testing::random_buffer<float>({N, V}, 16, -5.0, 5.0);
  Buffer targets = make_targets(N, V, 17, 7, kIgnore);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<char>> runs;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    Outputs<float> out(N);
    Buffer d(DType::f32, {N, V});
    cross_entropy_forward(ctx, logits, targets, kIgnore, 0.1, out.loss, out.nll, out.lse);
    cross_entropy_backward(ctx, logits, targets, out.lse, kIgnore, 0.1, 1.0 / N, d);
    std::vector<char> bytes;
    for (const Buffer* b : {&out.loss, &out.nll, &out.lse, &d}) {
      const char* p = static_cast<const char*>(b->tensor().data);
      bytes.insert(bytes.end(), p, p + b->tensor().bytes());
    }
    runs.push_back(bytes);
  }
  omp_set_num_threads(saved);
  EXPECT_TRUE(runs[0] == runs[1]);
}

// Expects fn to throw tfm::Error whose message contains every one of `needles`.
template <class F>
void expect_error(F&& fn, std::initializer_list<const char*> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << *needles.begin() << "'";
  } catch (const Error& e) {
    for (const char* needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// ---- Vocabulary-parallel cross-entropy (tensor parallelism) ------------------------------------

// Columns [v0, v0 + w) of logits [N, V] as a new [N, w] buffer.
template <class T>
Buffer vocab_block(const Tensor& x, int64_t v0, int64_t w) {
  const int64_t N = x.dim(0), V = x.dim(1);
  Buffer out(x.dtype, {N, w});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t v = 0; v < w; ++v) out.as<T>()[n * w + v] = x.as<T>()[n * V + v0 + v];
  return out;
}

// The split of V classes over P ranks: P − 1 blocks of ⌈V/P⌉, the last one smaller (uneven when
// P does not divide V). Returns the offsets, with V appended.
std::vector<int64_t> vocab_split(int64_t V, int64_t P) {
  std::vector<int64_t> off;
  const int64_t chunk = (V + P - 1) / P;
  for (int64_t p = 0; p < P; ++p) off.push_back(std::min(V, p * chunk));
  off.push_back(V);
  return off;
}

// For P ranks: partial stats of every block, gathered into [P, N, 3], combined == the full
// forward (loss, nll, lse); backward of each block with the global lse == those columns of the
// full backward.
template <class T>
void check_vocab_parallel(int64_t N, int64_t V, int64_t P, double eps, double tol) {
  SCOPED_TRACE(cat("N=", N, " V=", V, " P=", P, " eps=", eps, " ", dtype_name(dtype_of<T>())));
  using A = acc_t<T>;
  Context ctx = testing::cpu_context();
  const DType acc = dtype_of<A>();
  Buffer logits = testing::random_buffer<T>({N, V}, uint64_t(N * 131 + V * 7 + P), -3.0, 3.0);
  Buffer targets = make_targets(N, V, uint64_t(V + P), 4, kIgnore);
  Buffer loss(acc, {N}), nll(acc, {N}), lse(acc, {N});
  cross_entropy_forward(ctx, logits, targets, kIgnore, eps, loss, nll, lse);
  Buffer dfull(dtype_of<T>(), {N, V});
  const double grad_scale = 0.37;
  cross_entropy_backward(ctx, logits, targets, lse, kIgnore, eps, grad_scale, dfull);

  const std::vector<int64_t> off = vocab_split(V, P);
  Buffer stats_all(acc, {P, N, 3});
  for (int64_t p = 0; p < P; ++p) {
    const int64_t w = off[size_t(p) + 1] - off[size_t(p)];
    ASSERT_GE(w, 1);
    Buffer block = vocab_block<T>(logits, off[size_t(p)], w);
    Buffer stats(acc, {N, 3});
    testing::poison(stats);
    cross_entropy_partial_stats(ctx, block, targets, kIgnore, off[size_t(p)], stats);
    std::memcpy(stats_all.as<A>() + p * N * 3, stats.as<A>(), size_t(N * 3) * sizeof(A));
  }
  Buffer ploss(acc, {N}), pnll(acc, {N}), plse(acc, {N});
  for (const Buffer* b : {&ploss, &pnll, &plse}) testing::poison(*b);
  cross_entropy_combine_stats(ctx, stats_all, targets, kIgnore, V, eps, ploss, pnll, plse);
  EXPECT_LE(testing::max_rel_error(ploss, loss, 1.0), tol) << "loss";
  EXPECT_LE(testing::max_rel_error(pnll, nll, 1.0), tol) << "nll";
  EXPECT_LE(testing::max_rel_error(plse, lse, 1.0), tol) << "lse";
  for (int64_t n = 0; n < N; ++n)
    if (targets.as<int32_t>()[n] == kIgnore) {
      ASSERT_EQ(ploss.as<A>()[n], A(0)) << "ignored row " << n;
      ASSERT_EQ(pnll.as<A>()[n], A(0)) << "ignored row " << n;
    }

  // Backward per block from the combined (global) lse.
  for (int64_t p = 0; p < P; ++p) {
    const int64_t v0 = off[size_t(p)], w = off[size_t(p) + 1] - v0;
    Buffer block = vocab_block<T>(logits, v0, w);
    Buffer dblock(dtype_of<T>(), {N, w});
    testing::poison(dblock);
    cross_entropy_backward(ctx, block, targets, plse, kIgnore, eps, grad_scale, dblock, v0, V);
    Buffer want = vocab_block<T>(dfull, v0, w);
    EXPECT_LE(testing::max_abs_error(dblock, want), tol) << "dlogits block " << p;
  }
}

TEST(CrossEntropy, VocabParallelStatsCombineToTheFullForwardAndBackward) {
  for (int64_t P : {1, 2, 3, 4})
    for (double eps : {0.0, 0.1})
      for (auto [N, V] : {std::pair<int64_t, int64_t>{13, 10}, {7, 37}, {33, 1000}}) {
        check_vocab_parallel<double>(N, V, P, eps, 1e-12);
        check_vocab_parallel<float>(N, V, P, eps, 2e-6);
      }
}

TEST(CrossEntropy, VocabParallelPartialStatsAreTheBlockSums) {
  // stats[n] = {log Σ_block exp, x[y − offset] or 0, Σ_block x}; ignored rows carry no gold.
  Context ctx = testing::cpu_context();
  const int64_t N = 4, Vl = 5, offset = 10;
  Buffer x = testing::random_buffer<double>({N, Vl}, 3);
  Buffer t(DType::i32, {N});
  const int32_t ids[] = {12, 3, kIgnore, 14};  // in block, another block's, ignored, last column
  std::copy(ids, ids + N, t.as<int32_t>());
  Buffer stats(DType::f64, {N, 3});
  cross_entropy_partial_stats(ctx, x, t, kIgnore, offset, stats);
  for (int64_t n = 0; n < N; ++n) {
    double sum = 0, sum_exp = 0;
    for (int64_t v = 0; v < Vl; ++v) {
      sum += x.as<double>()[n * Vl + v];
      sum_exp += std::exp(x.as<double>()[n * Vl + v]);
    }
    EXPECT_NEAR(stats.as<double>()[3 * n], std::log(sum_exp), 1e-14);
    EXPECT_NEAR(stats.as<double>()[3 * n + 2], sum, 1e-14);
  }
  EXPECT_EQ(stats.as<double>()[1], x.as<double>()[0 * Vl + 2]);
  EXPECT_EQ(stats.as<double>()[4], 0.0);
  EXPECT_EQ(stats.as<double>()[3 * 2 + 1], 0.0);
  EXPECT_EQ(stats.as<double>()[3 * 3 + 1], x.as<double>()[3 * Vl + 4]);
}

TEST(CrossEntropy, VocabParallelRejectsBadArguments) {
  Context ctx = testing::cpu_context();
  const int64_t N = 3, V = 8;
  Buffer x = testing::random_buffer<float>({N, 4}, 5), d(DType::f32, {N, 4});
  Buffer t(DType::i32, {N}), lse(DType::f32, {N});
  const int32_t ids[] = {0, 7, kIgnore};
  std::copy(ids, ids + N, t.as<int32_t>());
  // Block past vocab_total, negative offset.
  EXPECT_THROW(cross_entropy_backward(ctx, x, t, lse, kIgnore, 0.1, 1.0, d, 5, V), Error);
  EXPECT_THROW(cross_entropy_backward(ctx, x, t, lse, kIgnore, 0.1, 1.0, d, -1, V), Error);
  EXPECT_NO_THROW(cross_entropy_backward(ctx, x, t, lse, kIgnore, 0.1, 1.0, d, 4, V));
  // A target past vocab_total.
  t.as<int32_t>()[1] = 8;
  EXPECT_THROW(cross_entropy_backward(ctx, x, t, lse, kIgnore, 0.1, 1.0, d, 4, V), Error);
  Buffer stats_all(DType::f32, {2, N, 3}), loss(DType::f32, {N}), nll(DType::f32, {N});
  std::fill_n(stats_all.as<float>(), stats_all.numel(), 0.0f);
  EXPECT_THROW(cross_entropy_combine_stats(ctx, stats_all, t, kIgnore, V, 0.1, loss, nll, lse),
               Error);
  t.as<int32_t>()[1] = -5;
  Buffer stats(DType::f32, {N, 3});
  EXPECT_THROW(cross_entropy_partial_stats(ctx, x, t, kIgnore, 0, stats), Error);
  t.as<int32_t>()[1] = 1;
  Buffer stats_f64(DType::f64, {N, 3}), stats_bad(DType::f32, {N, 2});
  EXPECT_THROW(cross_entropy_partial_stats(ctx, x, t, kIgnore, 0, stats_f64), Error);
  EXPECT_THROW(cross_entropy_partial_stats(ctx, x, t, kIgnore, 0, stats_bad), Error);
  Buffer lse_f64(DType::f64, {N});  // outputs must have stats' dtype
  EXPECT_THROW(cross_entropy_combine_stats(ctx, stats_all, t, kIgnore, V, 0.1, loss, nll, lse_f64),
               Error);
  EXPECT_NO_THROW(cross_entropy_combine_stats(ctx, stats_all, t, kIgnore, V, 0.1, loss, nll, lse));
}

TEST(CrossEntropy, RejectsTargetsOutOfRangeNamingPositionAndId) {
  Context ctx = testing::cpu_context();
  const int64_t N = 6, V = 11;
  Buffer logits = testing::random_buffer<float>({N, V}, 18);
  Buffer targets = make_targets(N, V, 19, 0, kIgnore);
  Outputs<float> out(N);
  Buffer d(DType::f32, {N, V});
  targets.as<int32_t>()[4] = 11;
  expect_error([&] {
    cross_entropy_forward(ctx, logits, targets, kIgnore, 0.1, out.loss, out.nll, out.lse);
  }, {"target id 11", "position 4"});
  expect_error([&] {
    cross_entropy_backward(ctx, logits, targets, out.lse, kIgnore, 0.1, 1.0, d);
  }, {"target id 11", "position 4"});
  targets.as<int32_t>()[4] = 3;
  targets.as<int32_t>()[2] = -7;  // negative, and not the ignore_index
  expect_error([&] {
    cross_entropy_forward(ctx, logits, targets, kIgnore, 0.1, out.loss, out.nll, out.lse);
  }, {"target id -7", "position 2"});
}

TEST(CrossEntropy, RejectsBadArguments) {
  Context ctx = testing::cpu_context();
  const int64_t N = 4, V = 5;
  Buffer logits = testing::random_buffer<float>({N, V}, 20);
  Buffer targets = make_targets(N, V, 21, 0, kIgnore);
  Outputs<float> out(N);
  Buffer d(DType::f32, {N, V});
  Buffer f32_targets(DType::f32, {N}), short_targets(DType::i32, {N - 1});
  Buffer f64_loss(DType::f64, {N}), flat_logits(DType::f32, {N * V}), d64(DType::f64, {N, V});
  expect_error([&] { cross_entropy_forward(ctx, logits, f32_targets, kIgnore, 0.1, out.loss, out.nll, out.lse); },
               {"targets is f32"});
  expect_error([&] { cross_entropy_forward(ctx, logits, short_targets, kIgnore, 0.1, out.loss, out.nll, out.lse); },
               {"targets has shape"});
  expect_error([&] { cross_entropy_forward(ctx, logits, targets, kIgnore, 0.1, f64_loss, out.nll, out.lse); },
               {"loss is f64"});
  expect_error([&] { cross_entropy_forward(ctx, flat_logits, targets, kIgnore, 0.1, out.loss, out.nll, out.lse); },
               {"logits must be [N, V]"});
  expect_error([&] { cross_entropy_forward(ctx, logits, targets, kIgnore, 1.5, out.loss, out.nll, out.lse); },
               {"smoothing"});
  expect_error([&] { cross_entropy_backward(ctx, logits, targets, out.lse, kIgnore, 0.1, 1.0, d64); },
               {"dlogits is f64"});
  Context cuda = ctx;
  cuda.device = Device::cuda;
  expect_error([&] { cross_entropy_forward(cuda, logits, targets, kIgnore, 0.1, out.loss, out.nll, out.lse); },
               {"context runs on cuda"});
}

}  // namespace
}  // namespace tfm
