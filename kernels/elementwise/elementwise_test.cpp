#include <gtest/gtest.h>

#include <cmath>

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

}  // namespace
}  // namespace tfm
