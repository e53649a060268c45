// Tests of the embedding's CPU twin: the sinusoid against the paper's formula, forward against
// the definition, position_offset, the table gradient against finite differences in double,
// accumulation, determinism across thread counts, float/double agreement and bad token ids;
// vocabulary shards (tensor parallelism) summing to the unsharded forward and splitting backward.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "kernels/embedding/embedding.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using testing::cpu_context;
using testing::random_buffer;

Buffer random_tokens(int64_t batch, int64_t length, int32_t vocab, uint64_t seed) {
  Buffer t(DType::i32, {batch, length});
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.as<int32_t>()[i] = id(rng);
  return t;
}

Buffer copy_of(const Tensor& t) {
  Buffer c(t.dtype, {t.numel()});
  std::copy_n(static_cast<const char*>(t.data), t.bytes(), static_cast<char*>(c.tensor().data));
  return c;
}

// PE written out from Vaswani et al. §3.5 for column i = 2k (sin) or 2k + 1 (cos).
double paper_pe(int64_t pos, int64_t i, int64_t d_model) {
  int64_t k = i / 2;
  double angle = double(pos) / std::pow(10000.0, 2.0 * double(k) / double(d_model));
  return i % 2 == 0 ? std::sin(angle) : std::cos(angle);
}

TEST(Embedding, SinusoidFollowsThePaper) {
  // Closed forms: position 0 gives sin 0 = 0 and cos 0 = 1 in every column pair; column pair 0
  // has frequency 1; with D = 4 the second pair has 10000^(2/4) = 100.
  for (int64_t i : {0, 2, 4}) EXPECT_EQ(sinusoidal_position(0, i, 5), 0.0);
  for (int64_t i : {1, 3}) EXPECT_EQ(sinusoidal_position(0, i, 5), 1.0);
  EXPECT_NEAR(sinusoidal_position(3, 0, 8), std::sin(3.0), 1e-15);
  EXPECT_NEAR(sinusoidal_position(3, 1, 8), std::cos(3.0), 1e-15);
  EXPECT_NEAR(sinusoidal_position(50, 2, 4), std::sin(0.5), 1e-15);
  EXPECT_NEAR(sinusoidal_position(50, 3, 4), std::cos(0.5), 1e-15);
  // Odd d_model: the last column (even index D − 1) is a sine of its own frequency.
  for (int64_t pos : {1, 17, 999, 4095})
    for (int64_t d : {5, 7, 512})
      for (int64_t i : {int64_t(0), int64_t(1), d / 2, d - 2, d - 1})
        EXPECT_NEAR(sinusoidal_position(pos, i, d), paper_pe(pos, i, d), 1e-12)
            << "pos=" << pos << " i=" << i << " d=" << d;
  EXPECT_THROW(sinusoidal_position(1, 5, 5), Error);
}

TEST(Embedding, ForwardMatchesDefinition) {
  Context ctx = cpu_context();
  for (int64_t batch : {1, 3})
    for (int64_t length : {1, 7, 33})
      for (int64_t width : {5, 17, 64})
        for (int64_t offset : {0, 13}) {
          const int32_t vocab = 11;
          Buffer tokens = random_tokens(batch, length, vocab, 100 + length);
          Buffer table = random_buffer<double>({vocab, width}, 101);
          Buffer out(DType::f64, {batch, length, width});
          testing::poison(out);
          const double scale = std::sqrt(double(width));
          embedding_forward(ctx, tokens, table, scale, out, offset);
          double worst = 0;
          for (int64_t b = 0; b < batch; ++b)
            for (int64_t t = 0; t < length; ++t)
              for (int64_t j = 0; j < width; ++j) {
                int32_t id = tokens.as<int32_t>()[b * length + t];
                double want = table.as<double>()[id * width + j] * scale +
                              paper_pe(offset + t, j, width);
                double got = out.as<double>()[(b * length + t) * width + j];
                worst = std::max(worst, std::isnan(got) ? 1e9 : std::abs(got - want));
              }
          EXPECT_LT(worst, 1e-12) << "B=" << batch << " T=" << length << " D=" << width
                                  << " offset=" << offset;
        }
}

TEST(Embedding, PositionOffsetShiftsPositions) {
  // Embedding the last `tail` tokens at offset k gives exactly the last rows of embedding the
  // whole sequence from position 0 (incremental decoding relies on this).
  Context ctx = cpu_context();
  const int64_t length = 12, tail = 5, width = 9, k = length - tail;
  Buffer tokens = random_tokens(1, length, 7, 5);
  Buffer table = random_buffer<float>({7, width}, 6);
  Buffer whole(DType::f32, {1, length, width}), part(DType::f32, {1, tail, width});
  Buffer tail_tokens(DType::i32, {1, tail});
  std::copy_n(tokens.as<int32_t>() + k, tail, tail_tokens.as<int32_t>());
  embedding_forward(ctx, tokens, table, 3.0, whole);
  embedding_forward(ctx, tail_tokens, table, 3.0, part, k);
  for (int64_t i = 0; i < tail * width; ++i)
    ASSERT_EQ(part.as<float>()[i], whole.as<float>()[k * width + i]) << "element " << i;
  // And a different offset gives different values (positions really moved).
  embedding_forward(ctx, tail_tokens, table, 3.0, part, k + 1);
  EXPECT_NE(part.as<float>()[0], whole.as<float>()[k * width]);
}

TEST(Embedding, TableGradientMatchesFiniteDifferences) {
  Context ctx = cpu_context();
  // A small vocabulary so tokens repeat, and one id (vocab − 1) never used.
  const int64_t batch = 3, length = 7, width = 5;
  const int32_t vocab = 6;
  Buffer tokens = random_tokens(batch, length, vocab - 1, 7);
  Buffer table = random_buffer<double>({vocab, width}, 8);
  Buffer c = random_buffer<double>({batch, length, width}, 9);
  const double scale = 1.7;
  auto loss = [&] {
    Buffer out(DType::f64, {batch, length, width});
    embedding_forward(ctx, tokens, table, scale, out, 2);
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += out.as<double>()[i] * c.as<double>()[i];
    return s;
  };
  Buffer dtable(DType::f64, {vocab, width});
  embedding_backward(ctx, tokens, c, scale, dtable);
  EXPECT_LT(testing::gradient_error(dtable, testing::numeric_gradient(table, loss)), 1e-6);
  for (int64_t j = 0; j < width; ++j) EXPECT_EQ(dtable.as<double>()[(vocab - 1) * width + j], 0.0);
}

TEST(Embedding, BackwardAccumulates) {
  Context ctx = cpu_context();
  const int64_t batch = 2, length = 9, width = 17;
  const int32_t vocab = 4;
  Buffer tokens = random_tokens(batch, length, vocab, 10);
  Buffer dout = random_buffer<double>({batch, length, width}, 11);
  Buffer once(DType::f64, {vocab, width});
  embedding_backward(ctx, tokens, dout, 0.5, once);
  Buffer dtable = random_buffer<double>({vocab, width}, 12), start = copy_of(dtable);
  embedding_backward(ctx, tokens, dout, 0.5, dtable);
  embedding_backward(ctx, tokens, dout, 0.5, dtable);
  for (int64_t i = 0; i < dtable.numel(); ++i)
    ASSERT_NEAR(dtable.as<double>()[i], start.as<double>()[i] + 2 * once.as<double>()[i], 1e-14);
}

TEST(Embedding, BackwardIsIndependentOfThreadCount) {
  // Many repeats of few ids in float: any change in summation order would change the bits.
  Context ctx = cpu_context();
  const int64_t batch = 8, length = 129, width = 67;
  Buffer tokens = random_tokens(batch, length, 3, 13);
  Buffer dout = random_buffer<float>({batch, length, width}, 14);
  Buffer one(DType::f32, {3, width}), two(DType::f32, {3, width});
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  embedding_backward(ctx, tokens, dout, 22.6, one);
  omp_set_num_threads(2);
  embedding_backward(ctx, tokens, dout, 22.6, two);
  omp_set_num_threads(saved);
  for (int64_t i = 0; i < one.numel(); ++i) ASSERT_EQ(one.as<float>()[i], two.as<float>()[i]) << i;
}

TEST(Embedding, FloatAgreesWithDouble) {
  Context ctx = cpu_context();
  const int64_t batch = 3, length = 33, width = 65;
  const int32_t vocab = 17;
  Buffer tokens = random_tokens(batch, length, vocab, 15);
  Buffer table = random_buffer<double>({vocab, width}, 16);
  Buffer dout = random_buffer<double>({batch, length, width}, 17);
  Buffer table_f(DType::f32, {vocab, width}), dout_f(DType::f32, {batch, length, width});
  for (int64_t i = 0; i < table.numel(); ++i) table_f.as<float>()[i] = float(table.as<double>()[i]);
  for (int64_t i = 0; i < dout.numel(); ++i) dout_f.as<float>()[i] = float(dout.as<double>()[i]);
  const double scale = std::sqrt(65.0);
  Buffer out(DType::f64, {batch, length, width}), out_f(DType::f32, {batch, length, width});
  embedding_forward(ctx, tokens, table, scale, out, 100);
  embedding_forward(ctx, tokens, table_f, scale, out_f, 100);
  EXPECT_LT(testing::max_rel_error(out_f, out, 1.0), 1e-6);
  Buffer dtable(DType::f64, {vocab, width}), dtable_f(DType::f32, {vocab, width});
  embedding_backward(ctx, tokens, dout, scale, dtable);
  embedding_backward(ctx, tokens, dout_f, scale, dtable_f);
  EXPECT_LT(testing::max_rel_error(dtable_f, dtable, 1.0), 1e-5);
}

// ---- Vocabulary-parallel embedding (tensor parallelism) ----------------------------------------

// Rows [r0, r0 + n) of table [V, D] as a new [n, D] buffer.
template <class T>
Buffer table_rows(const Tensor& table, int64_t r0, int64_t n) {
  const int64_t D = table.dim(1);
  Buffer out(table.dtype, {n, D});
  std::copy_n(table.as<T>() + r0 * D, n * D, out.as<T>());
  return out;
}

// P shards of V rows (the last one smaller when P does not divide V), PE on shard 0 only: the
// sum of the shards' outputs equals the unsharded forward — bit for bit for the ids of shard 0
// (the others add zeros), to the last bit otherwise — and each shard's dtable is those rows of
// the unsharded dtable, bit for bit (the same additions in the same order).
template <class T>
void check_sharded(int64_t P, double tol) {
  Context ctx = cpu_context();
  const int64_t B = 3, L = 7, V = 23, D = 10, offset = 5;
  const double scale = 3.1;
  SCOPED_TRACE(cat("P=", P, " ", dtype_name(dtype_of<T>())));
  Buffer tokens = random_tokens(B, L, int32_t(V), 71);
  Buffer table = random_buffer<T>({V, D}, 72);
  Buffer full(dtype_of<T>(), {B, L, D});
  embedding_forward(ctx, tokens, table, scale, full, offset);
  Buffer dout = random_buffer<T>({B, L, D}, 73);
  Buffer dfull(dtype_of<T>(), {V, D});
  std::fill_n(dfull.as<T>(), V * D, T(0));
  embedding_backward(ctx, tokens, dout, scale, dfull);

  const int64_t chunk = (V + P - 1) / P;
  Buffer sum(dtype_of<T>(), {B, L, D});
  std::fill_n(sum.as<T>(), B * L * D, T(0));
  for (int64_t p = 0; p < P; ++p) {
    const int64_t r0 = std::min(V, p * chunk), n = std::min(V, r0 + chunk) - r0;
    EmbeddingShard shard{r0, V, p == 0};
    Buffer part_table = table_rows<T>(table, r0, n);
    Buffer part(dtype_of<T>(), {B, L, D});
    testing::poison(part);
    embedding_forward(ctx, tokens, part_table, scale, part, offset, shard);
    for (int64_t i = 0; i < B * L * D; ++i) sum.as<T>()[i] += part.as<T>()[i];
    // Rows of other shards' ids hold exactly PE (shard 0) or zero.
    for (int64_t r = 0; r < B * L; ++r) {
      const int32_t id = tokens.as<int32_t>()[r];
      if (id >= r0 && id < r0 + n) continue;
      for (int64_t j = 0; j < D; ++j) {
        const T want = p == 0 ? T(sinusoidal_position(offset + r % L, j, D)) : T(0);
        ASSERT_EQ(part.as<T>()[r * D + j], want) << "shard " << p << " row " << r;
      }
    }
    Buffer dpart(dtype_of<T>(), {n, D});
    std::fill_n(dpart.as<T>(), n * D, T(0));
    embedding_backward(ctx, tokens, dout, scale, dpart, shard);
    for (int64_t i = 0; i < n * D; ++i)
      ASSERT_EQ(dpart.as<T>()[i], dfull.as<T>()[r0 * D + i]) << "dtable shard " << p;
  }
  EXPECT_LE(testing::max_rel_error(sum, full, 1.0), tol);
  for (int64_t r = 0; r < B * L; ++r)
    if (tokens.as<int32_t>()[r] < chunk)
      for (int64_t j = 0; j < D; ++j)
        ASSERT_EQ(sum.as<T>()[r * D + j], full.as<T>()[r * D + j]) << "shard 0's id, row " << r;
}

TEST(Embedding, VocabShardsSumToTheUnshardedForwardAndSplitTheBackward) {
  for (int64_t P : {1, 2, 3, 4}) {
    check_sharded<double>(P, 1e-15);
    check_sharded<float>(P, 4e-7);  // two roundings instead of one
  }
}

TEST(Embedding, VocabShardLookupOnlyAndBadIds) {
  Context ctx = cpu_context();
  Buffer table = random_buffer<double>({4, 6}, 81);
  Buffer tokens(DType::i32, {2, 3});
  const int32_t ids[] = {10, 11, 3, 13, 12, 0};
  std::copy(ids, ids + 6, tokens.as<int32_t>());
  Buffer out(DType::f64, {2, 3, 6});
  EmbeddingShard shard{10, 16, false};
  embedding_forward(ctx, tokens, table, 2.0, out, 0, shard);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t j = 0; j < 6; ++j) {
      const int64_t local = ids[r] - 10;
      const double want = local >= 0 && local < 4 ? 2.0 * table.as<double>()[local * 6 + j] : 0.0;
      ASSERT_EQ(out.as<double>()[r * 6 + j], want) << "row " << r;
    }
  // An id outside [0, vocab_total) names the id, its position and vocab_total.
  tokens.as<int32_t>()[4] = 16;
  Buffer dtable(DType::f64, {4, 6});
  for (bool backward : {false, true}) {
    try {
      if (backward) {
        embedding_backward(ctx, tokens, out, 1.0, dtable, shard);
      } else {
        embedding_forward(ctx, tokens, table, 1.0, out, 0, shard);
      }
      ADD_FAILURE() << "no error for id 16";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("16"), std::string::npos) << msg;
      EXPECT_NE(msg.find("[1, 1]"), std::string::npos) << msg;
      EXPECT_NE(msg.find("size 16"), std::string::npos) << msg;
    }
  }
  // A table that does not fit in vocab_total, a negative offset.
  tokens.as<int32_t>()[4] = 12;
  EXPECT_THROW(embedding_forward(ctx, tokens, table, 1.0, out, 0, EmbeddingShard{13, 16, true}),
               Error);
  EXPECT_THROW(embedding_backward(ctx, tokens, out, 1.0, dtable, EmbeddingShard{-1, 16, true}),
               Error);
}

TEST(Embedding, BadTokenIdNamesIdPositionAndVocabulary) {
  Context ctx = cpu_context();
  Buffer tokens(DType::i32, {2, 3}), table(DType::f32, {10, 4}), out(DType::f32, {2, 3, 4});
  for (int32_t bad : {10, -1, 12345}) {
    tokens.as<int32_t>()[4] = bad;  // position [1, 1]
    for (int direction = 0; direction < 2; ++direction) {
      try {
        if (direction == 0) embedding_forward(ctx, tokens, table, 1.0, out);
        else embedding_backward(ctx, tokens, out, 1.0, table);
        ADD_FAILURE() << "token id " << bad << " was accepted";
      } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("token id " + std::to_string(bad)), std::string::npos) << msg;
        EXPECT_NE(msg.find("[1, 1]"), std::string::npos) << msg;
        EXPECT_NE(msg.find("size 10"), std::string::npos) << msg;
      }
    }
  }
}

TEST(Embedding, RejectsMismatchedArguments) {
  Context ctx = cpu_context();
  Buffer tokens(DType::i32, {2, 3}), table(DType::f32, {10, 4}), out(DType::f32, {2, 3, 4});
  Buffer tokens_f(DType::f32, {2, 3}), tokens_1d(DType::i32, {6});
  Buffer out_wide(DType::f32, {2, 3, 5}), out_f64(DType::f64, {2, 3, 4});
  Buffer out_flat(DType::f32, {6, 4});
  EXPECT_NO_THROW(embedding_forward(ctx, tokens, table, 1.0, out));
  EXPECT_THROW(embedding_forward(ctx, tokens_f, table, 1.0, out), Error);
  EXPECT_THROW(embedding_forward(ctx, tokens_1d, table, 1.0, out), Error);
  EXPECT_THROW(embedding_forward(ctx, tokens, table, 1.0, out_wide), Error);
  EXPECT_THROW(embedding_forward(ctx, tokens, table, 1.0, out_f64), Error);
  EXPECT_THROW(embedding_forward(ctx, tokens, table, 1.0, out_flat), Error);
  EXPECT_THROW(embedding_forward(ctx, tokens, table, 1.0, out, -1), Error);
  EXPECT_THROW(embedding_backward(ctx, tokens, out_wide, 1.0, table), Error);
  EXPECT_THROW(embedding_backward(ctx, tokens, out_f64, 1.0, table), Error);
}

}  // namespace
}  // namespace tfm
