// Tests of dropout's CPU twin: the mask is dropout_keep(seed, offset + i) element by element, a
// pure function of the global index (splitting a tensor changes nothing), the keep rate and the
// 1/(1 − p) scale, backward regenerating the forward mask, aliasing, p = 0, thread-count
// independence, float/double agreement and rejected rates; column blocks of a larger tensor
// (tensor parallelism) drawing exactly those columns' mask.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "kernels/dropout/dropout.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using testing::cpu_context;
using testing::random_buffer;

Buffer copy_of(const Tensor& t) {
  Buffer c(t.dtype, {t.numel()});
  std::copy_n(static_cast<const char*>(t.data), t.bytes(), static_cast<char*>(c.tensor().data));
  return c;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.bytes() == b.bytes() && std::equal(static_cast<const char*>(a.data),
                                              static_cast<const char*>(a.data) + a.bytes(),
                                              static_cast<const char*>(b.data));
}

TEST(Dropout, ForwardIsTheCounterMaskTimesInverseKeepRate) {
  Context ctx = cpu_context();
  // Offsets that are not multiples of four exercise partial Philox groups at both ends; the
  // large one needs the counter's high word.
  for (int64_t n : {1, 2, 7, 1001})
    for (uint64_t offset : {uint64_t(0), uint64_t(3), uint64_t(6), (uint64_t(1) << 34) + 1})
      for (float p : {0.1f, 0.5f}) {
        DropoutSpec d{p, 0x5eedull, offset};
        Buffer x = random_buffer<double>({n}, 1, 0.5, 1.5), y(DType::f64, {n});
        testing::poison(y);
        dropout_forward(ctx, x, y, d);
        for (int64_t i = 0; i < n; ++i) {
          double xi = x.as<double>()[i], yi = y.as<double>()[i];
          if (dropout_keep(d, uint64_t(i))) {
            ASSERT_NEAR(yi, xi / (1.0 - double(p)), 1e-15 * std::abs(yi))
                << "kept element " << i << " n=" << n << " offset=" << offset << " p=" << p;
          } else {
            ASSERT_EQ(yi, 0.0) << "dropped element " << i << " n=" << n << " offset=" << offset;
          }
        }
      }
}

TEST(Dropout, MaskDependsOnlyOnSeedAndGlobalIndex) {
  // Forward over the whole tensor equals forward over two halves, the second with its offset
  // shifted by the first half's length (odd, so the split cuts a Philox group).
  Context ctx = cpu_context();
  const int64_t n = 1001, head = 333;
  DropoutSpec d{0.3f, 99, 5};
  Buffer x = random_buffer<float>({n}, 2), whole(DType::f32, {n}), split(DType::f32, {n});
  dropout_forward(ctx, x, whole, d);
  DropoutSpec second = d;
  second.offset += head;
  dropout_forward(ctx, x.tensor().rows(0, head), split.tensor().rows(0, head), d);
  dropout_forward(ctx, x.tensor().rows(head, n - head), split.tensor().rows(head, n - head),
                  second);
  EXPECT_TRUE(same_bits(whole, split));

  // Another seed draws another mask.
  DropoutSpec other = d;
  other.seed += 1;
  dropout_forward(ctx, x, split, other);
  EXPECT_FALSE(same_bits(whole, split));
}

// Tensor parallelism: a rank holding columns [c0, c0 + Cl) of a logical [R, C] tensor, with the
// spec from dropout_column_block, draws exactly those columns' mask of the unsharded call —
// forward and backward, odd sizes, blocks that cut Philox groups, every block of a split.
TEST(Dropout, ColumnBlockEqualsThoseColumnsOfTheWholeTensor) {
  Context ctx = cpu_context();
  for (auto [R, C] : {std::pair<int64_t, int64_t>{7, 13}, {5, 64}, {33, 37}, {1, 9}})
    for (auto [c0, Cl] : {std::pair<int64_t, int64_t>{0, 1}, {0, 4}, {1, 3}, {3, 5}, {C / 2, C - C / 2},
                          {C - 1, 1}, {0, C}})
      for (uint64_t offset : {uint64_t(0), uint64_t(3), (uint64_t(1) << 33) + 2}) {
        SCOPED_TRACE(cat("R=", R, " C=", C, " c0=", c0, " Cl=", Cl, " offset=", offset));
        DropoutSpec whole{0.4f, 0xb10cull, offset};
        DropoutSpec part = dropout_column_block(whole, Cl, C, c0);
        Buffer x = random_buffer<double>({R, C}, 11, 0.5, 1.5), y(DType::f64, {R, C});
        Buffer dy = random_buffer<double>({R, C}, 12, 0.5, 1.5), dx(DType::f64, {R, C});
        dropout_forward(ctx, x, y, whole);
        dropout_backward(ctx, dy, dx, whole);
        Buffer xl(DType::f64, {R, Cl}), dyl(DType::f64, {R, Cl});
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < Cl; ++c) {
            xl.as<double>()[r * Cl + c] = x.as<double>()[r * C + c0 + c];
            dyl.as<double>()[r * Cl + c] = dy.as<double>()[r * C + c0 + c];
          }
        Buffer yl(DType::f64, {R, Cl}), dxl(DType::f64, {R, Cl});
        testing::poison(yl);
        testing::poison(dxl);
        dropout_forward(ctx, xl, yl, part);
        dropout_backward(ctx, dyl, dxl, part);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < Cl; ++c) {
            ASSERT_EQ(yl.as<double>()[r * Cl + c], y.as<double>()[r * C + c0 + c])
                << "forward [" << r << ", " << c << "]";
            ASSERT_EQ(dxl.as<double>()[r * Cl + c], dx.as<double>()[r * C + c0 + c])
                << "backward [" << r << ", " << c << "]";
            ASSERT_EQ(dropout_keep(part, uint64_t(r * Cl + c)),
                      dropout_keep(whole, uint64_t(r * C + c0 + c)));
          }
      }
}

// Large enough that the block path forks a team and runs multi-chunk spans (a row of 3000
// elements is more than one 256-counter chunk); the result is the same on one or two threads.
TEST(Dropout, ColumnBlockIndependentOfThreadCountAndChunks) {
  Context ctx = cpu_context();
  const int64_t R = 9, C = 7001, c0 = 2001, Cl = 3000;
  DropoutSpec whole{0.2f, 77, 5};
  DropoutSpec part = dropout_column_block(whole, Cl, C, c0);
  Buffer x = random_buffer<float>({R, C}, 13, 0.5, 1.5), y(DType::f32, {R, C});
  dropout_forward(ctx, x, y, whole);
  Buffer xl(DType::f32, {R, Cl});
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < Cl; ++c) xl.as<float>()[r * Cl + c] = x.as<float>()[r * C + c0 + c];
  Buffer one(DType::f32, {R, Cl}), two(DType::f32, {R, Cl});
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  dropout_forward(ctx, xl, one, part);
  omp_set_num_threads(2);
  dropout_forward(ctx, xl, two, part);
  omp_set_num_threads(saved);
  EXPECT_TRUE(same_bits(one, two));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < Cl; ++c)
      ASSERT_EQ(one.as<float>()[r * Cl + c], y.as<float>()[r * C + c0 + c]) << r << ", " << c;
}

TEST(Dropout, ColumnBlockSpecHelper) {
  DropoutSpec d{0.1f, 1, 10};
  DropoutSpec same = dropout_column_block(d, 8, 8, 0);
  EXPECT_EQ(same.block, 0u);  // the whole tensor keeps the contiguous fast path
  DropoutSpec b = dropout_column_block(d, 3, 8, 5);
  EXPECT_EQ(b.block, 3u);
  EXPECT_EQ(b.block_stride, 8u);
  EXPECT_EQ(b.block_start, 5u);
  // local i = 4 is row 1, column 1 of the block: logical 1·8 + 5 + 1 = 14, global 24.
  EXPECT_EQ(dropout_element(b, 4), 24u);
  EXPECT_EQ(dropout_element(d, 4), 14u);
  EXPECT_THROW(dropout_column_block(d, 4, 8, 5), Error);   // columns past the end
  EXPECT_THROW(dropout_column_block(d, 1, 8, -1), Error);
  EXPECT_THROW(dropout_column_block(b, 1, 3, 0), Error);   // no blocks of blocks
  // A hand-made block that leaves its row is rejected by the op.
  Context ctx = cpu_context();
  Buffer x(DType::f32, {8}), y(DType::f32, {8});
  DropoutSpec bad = d;
  bad.block = 4, bad.block_stride = 6, bad.block_start = 3;
  EXPECT_THROW(dropout_forward(ctx, x, y, bad), Error);
}

TEST(Dropout, KeepRateAndScale) {
  Context ctx = cpu_context();
  const int64_t n = int64_t(1) << 20;
  Buffer ones(DType::f32, {n}), y(DType::f32, {n});
  std::fill_n(ones.as<float>(), n, 1.0f);
  for (float p : {0.1f, 0.3f, 0.5f}) {
    dropout_forward(ctx, ones, y, DropoutSpec{p, 7, 0});
    int64_t kept = 0;
    const double scale = 1.0 / (1.0 - double(p));
    for (int64_t i = 0; i < n; ++i) {
      float v = y.as<float>()[i];
      if (v == 0.0f) continue;
      ++kept;
      ASSERT_NEAR(v, scale, 1e-6 * scale) << "element " << i << " p=" << p;
    }
    // 6 standard deviations of a binomial keep fraction at n = 2^20 is below 0.003.
    EXPECT_NEAR(double(kept) / double(n), 1.0 - double(p), 0.003) << "p=" << p;
  }
}

TEST(Dropout, BackwardRegeneratesTheForwardMask) {
  Context ctx = cpu_context();
  const int64_t n = 1001;
  DropoutSpec d{0.4f, 1234, 17};
  Buffer x = random_buffer<double>({n}, 3, 0.5, 1.5), y(DType::f64, {n});
  Buffer dy = random_buffer<double>({n}, 4, 0.5, 1.5), dx(DType::f64, {n});
  testing::poison(dx);
  dropout_forward(ctx, x, y, d);
  dropout_backward(ctx, dy, dx, d);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool kept_forward = y.as<double>()[i] != 0.0;
    kept += kept_forward;
    ASSERT_EQ(kept_forward, dx.as<double>()[i] != 0.0) << "element " << i;
    if (kept_forward) {
      ASSERT_NEAR(dx.as<double>()[i], dy.as<double>()[i] / (1.0 - double(d.p)), 1e-14)
          << "element " << i;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, n);
}

TEST(Dropout, GradientMatchesFiniteDifferences) {
  Context ctx = cpu_context();
  const int64_t n = 37;
  DropoutSpec d{0.3f, 42, 2};
  Buffer x = random_buffer<double>({n}, 5), c = random_buffer<double>({n}, 6);
  auto loss = [&] {
    Buffer y(DType::f64, {n});
    dropout_forward(ctx, x, y, d);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += y.as<double>()[i] * c.as<double>()[i];
    return s;
  };
  Buffer dx(DType::f64, {n});
  dropout_backward(ctx, c, dx, d);
  EXPECT_LT(testing::gradient_error(dx, testing::numeric_gradient(x, loss)), 1e-6);
}

TEST(Dropout, InPlaceEqualsOutOfPlace) {
  Context ctx = cpu_context();
  const int64_t n = 513;
  DropoutSpec d{0.2f, 3, 1};
  Buffer x = random_buffer<float>({n}, 7), y(DType::f32, {n}), inplace = copy_of(x);
  dropout_forward(ctx, x, y, d);
  dropout_forward(ctx, inplace, inplace, d);
  EXPECT_TRUE(same_bits(y, inplace));
  Buffer dx(DType::f32, {n});
  dropout_backward(ctx, x, dx, d);
  Buffer dx_inplace = copy_of(x);
  dropout_backward(ctx, dx_inplace, dx_inplace, d);
  EXPECT_TRUE(same_bits(dx, dx_inplace));
}

TEST(Dropout, ZeroRateIsACopy) {
  Context ctx = cpu_context();
  const int64_t n = 77;
  DropoutSpec d{0.0f, 3, 1};
  Buffer x = random_buffer<double>({n}, 8), y(DType::f64, {n}), dx(DType::f64, {n});
  testing::poison(y);
  testing::poison(dx);
  dropout_forward(ctx, x, y, d);
  dropout_backward(ctx, x, dx, d);
  EXPECT_TRUE(same_bits(x, y));
  EXPECT_TRUE(same_bits(x, dx));
  Buffer inplace = copy_of(x);
  dropout_forward(ctx, inplace, inplace, d);
  EXPECT_TRUE(same_bits(x, inplace));
}

TEST(Dropout, IndependentOfThreadCount) {
  Context ctx = cpu_context();
  const int64_t n = 100003;
  DropoutSpec d{0.1f, 11, 3};
  Buffer x = random_buffer<float>({n}, 9), one(DType::f32, {n}), two(DType::f32, {n});
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  dropout_forward(ctx, x, one, d);
  omp_set_num_threads(2);
  dropout_forward(ctx, x, two, d);
  omp_set_num_threads(saved);
  EXPECT_TRUE(same_bits(one, two));
}

TEST(Dropout, FloatAgreesWithDouble) {
  Context ctx = cpu_context();
  const int64_t n = 1001;
  DropoutSpec d{0.1f, 12, 0};
  Buffer x = random_buffer<double>({n}, 10), xf(DType::f32, {n});
  for (int64_t i = 0; i < n; ++i) xf.as<float>()[i] = float(x.as<double>()[i]);
  Buffer y(DType::f64, {n}), yf(DType::f32, {n});
  dropout_forward(ctx, x, y, d);
  dropout_forward(ctx, xf, yf, d);
  EXPECT_LT(testing::max_rel_error(yf, y), 1e-6);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(yf.as<float>()[i] == 0.0f, y.as<double>()[i] == 0.0) << "element " << i;
}

TEST(Dropout, RejectsBadRateAndMismatchedTensors) {
  Context ctx = cpu_context();
  Buffer x(DType::f32, {8}), y(DType::f32, {8}), y_short(DType::f32, {7}), y_f64(DType::f64, {8});
  for (float p : {-0.1f, 1.0f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
    EXPECT_THROW(dropout_forward(ctx, x, y, DropoutSpec{p, 1, 0}), Error) << "p=" << p;
    EXPECT_THROW(dropout_backward(ctx, x, y, DropoutSpec{p, 1, 0}), Error) << "p=" << p;
  }
  EXPECT_NO_THROW(dropout_forward(ctx, x, y, DropoutSpec{0.99f, 1, 0}));
  EXPECT_THROW(dropout_forward(ctx, x, y_short, DropoutSpec{0.1f, 1, 0}), Error);
  EXPECT_THROW(dropout_forward(ctx, x, y_f64, DropoutSpec{0.1f, 1, 0}), Error);
  EXPECT_THROW(dropout_backward(ctx, x, y_short, DropoutSpec{0.0f, 1, 0}), Error);
}

}  // namespace
}  // namespace tfm
