#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/elementwise/elementwise.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using testing::cpu_context;
using testing::random_buffer;

TEST(Elementwise, AddAccumulateScaleAgreeWithNaiveLoops) {
  Context ctx = cpu_context();
  for (int64_t n : {1, 7, 1000, 65537}) {
    Buffer a = random_buffer<float>({n}, 1), b = random_buffer<float>({n}, 2);
    Buffer out(DType::f32, {n});
    testing::poison(out);
    add(ctx, a, b, out);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out.as<float>()[i], a.as<float>()[i] + b.as<float>()[i]);
    accumulate(ctx, out, a);
    scale_inplace(ctx, out, 0.5);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_FLOAT_EQ(out.as<float>()[i], 0.5f * ((a.as<float>()[i] + b.as<float>()[i]) + a.as<float>()[i]));
  }
}

TEST(Elementwise, SumSquaresIsExactInDoubleAndFlagsNonFinite) {
  Context ctx = cpu_context();
  Buffer x = random_buffer<double>({40001}, 3);
  double naive = 0;
  for (int64_t i = 0; i < x.numel(); ++i) naive += x.as<double>()[i] * x.as<double>()[i];
  EXPECT_NEAR(sum_squares(ctx, x), naive, 1e-9 * naive);
  x.as<double>()[12345] = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(std::isfinite(sum_squares(ctx, x)));
  x.as<double>()[12345] = std::nan("");
  EXPECT_FALSE(std::isfinite(sum_squares(ctx, x)));
}

TEST(Elementwise, RejectsMismatchedOperands) {
  Context ctx = cpu_context();
  Buffer a(DType::f32, {4}), b(DType::f32, {5}), c(DType::f64, {4});
  EXPECT_THROW(add(ctx, a, b, a), Error);
  EXPECT_THROW(add(ctx, a, c, a), Error);
}

TEST(Elementwise, ConvertRoundsOnceToNearestEven) {
  auto ctx = cpu_context();
  // Values chosen to land between bf16/f16 neighbours, plus the specials.
  std::vector<float> values{0.0f, -0.0f, 1.0f, 1.00390625f /* 1 + 2^-8: a bf16 tie */,
                            1.0f + 3.0f / 512.0f, 3.14159265f, -65504.0f, 70000.0f, 1e-8f,
                            std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()};
  const int64_t n = int64_t(values.size());
  Tensor src(values.data(), DType::f32, Device::cpu, {n});
  Buffer b(DType::bf16, {n}), h(DType::f16, {n}), d(DType::f64, {n}), back(DType::f32, {n});
  convert(ctx, src, b.tensor());
  convert(ctx, src, h.tensor());
  convert(ctx, src, d.tensor());
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(b.tensor().as<bf16_t>()[i].bits, float_to_bf16(values[size_t(i)]).bits) << i;
    EXPECT_EQ(h.tensor().as<f16_t>()[i].bits, float_to_f16(values[size_t(i)]).bits) << i;
    if (!std::isnan(values[size_t(i)])) EXPECT_EQ(d.tensor().as<double>()[i], double(values[size_t(i)])) << i;
  }
  // bf16 → f32 is exact, so a round trip is the rounding alone.
  convert(ctx, b.tensor(), back.tensor());
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(values[size_t(i)])) {
      EXPECT_TRUE(std::isnan(back.tensor().as<float>()[i]));
    } else {
      EXPECT_EQ(back.tensor().as<float>()[i], bf16_to_float(float_to_bf16(values[size_t(i)]))) << i;
    }
  }
  EXPECT_EQ(b.tensor().as<bf16_t>()[3].bits, float_to_bf16(1.0f).bits);  // the tie went to even
  Buffer ints(DType::i32, {n});
  EXPECT_THROW(convert(ctx, src, ints.tensor()), Error);
  Buffer shorter(DType::bf16, {n - 1});
  EXPECT_THROW(convert(ctx, src, shorter.tensor()), Error);
}

}  // namespace
}  // namespace tfm
