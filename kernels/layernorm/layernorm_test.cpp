// Tests of layer normalisation's CPU twin: forward (y, mean, rstd) against the definition,
// gradients of x, gamma and beta against finite differences in double, dx aliasing dy,
// accumulation, determinism across thread counts, float/double agreement and argument checks.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/layernorm/layernorm.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using testing::cpu_context;
using testing::random_buffer;

constexpr double kEps = 1e-5;

Buffer copy_of(const Tensor& t) {
  Buffer c(t.dtype, {t.numel()});
  std::copy_n(static_cast<const char*>(t.data), t.bytes(), static_cast<char*>(c.tensor().data));
  return c;
}

Buffer to_float(const Tensor& t) {
  Buffer f(DType::f32, {t.numel()});
  for (int64_t i = 0; i < t.numel(); ++i) f.as<float>()[i] = float(t.as<double>()[i]);
  return f;
}

// The definition, row by row in double.
void naive_layer_norm(const double* x, const double* gamma, const double* beta, int64_t m,
                      int64_t d, double* y, double* mean, double* rstd) {
  for (int64_t r = 0; r < m; ++r) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < d; ++j) mu += x[r * d + j];
    mu /= double(d);
    for (int64_t j = 0; j < d; ++j) var += (x[r * d + j] - mu) * (x[r * d + j] - mu);
    var /= double(d);
    double rs = 1.0 / std::sqrt(var + kEps);
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = (x[r * d + j] - mu) * rs * gamma[j] + beta[j];
    mean[r] = mu;
    rstd[r] = rs;
  }
}

TEST(LayerNorm, ForwardMatchesDefinitionOnOddShapes) {
  Context ctx = cpu_context();
  for (int64_t m : {1, 7, 33})
    for (int64_t d : {5, 17, 65}) {
      // An offset mean (3) checks the variance is not computed as E[x²] − E[x]².
      Buffer x = random_buffer<double>({m, d}, 1, 2.0, 4.0);
      Buffer gamma = random_buffer<double>({d}, 2, 0.5, 1.5), beta = random_buffer<double>({d}, 3);
      Buffer y(DType::f64, {m, d}), mean(DType::f64, {m}), rstd(DType::f64, {m});
      Buffer y_want(DType::f64, {m, d}), mean_want(DType::f64, {m}), rstd_want(DType::f64, {m});
      testing::poison(y);
      testing::poison(mean);
      testing::poison(rstd);
      layer_norm_forward(ctx, x, gamma, beta, kEps, y, mean, rstd);
      naive_layer_norm(x.as<double>(), gamma.as<double>(), beta.as<double>(), m, d,
                       y_want.as<double>(), mean_want.as<double>(), rstd_want.as<double>());
      EXPECT_LT(testing::max_abs_error(y, y_want), 1e-12) << "m=" << m << " d=" << d;
      EXPECT_LT(testing::max_abs_error(mean, mean_want), 1e-13) << "m=" << m << " d=" << d;
      EXPECT_LT(testing::max_rel_error(rstd, rstd_want), 1e-12) << "m=" << m << " d=" << d;
    }
}

TEST(LayerNorm, HigherRankInputIsRowsTimesLastDimension) {
  Context ctx = cpu_context();
  Buffer x = random_buffer<double>({2, 3, 7}, 4), gamma = random_buffer<double>({7}, 5);
  Buffer beta = random_buffer<double>({7}, 6);
  Buffer y(DType::f64, {2, 3, 7}), mean(DType::f64, {6}), rstd(DType::f64, {6});
  Buffer y_want(DType::f64, {6, 7}), mean_want(DType::f64, {6}), rstd_want(DType::f64, {6});
  testing::poison(y);
  layer_norm_forward(ctx, x, gamma, beta, kEps, y, mean, rstd);
  naive_layer_norm(x.as<double>(), gamma.as<double>(), beta.as<double>(), 6, 7,
                   y_want.as<double>(), mean_want.as<double>(), rstd_want.as<double>());
  EXPECT_LT(testing::max_abs_error(y, y_want), 1e-12);
}

// Loss = Σ c ⊙ y for a fixed random c, so dy = c.
TEST(LayerNorm, GradientsMatchFiniteDifferences) {
  Context ctx = cpu_context();
  const int64_t m = 5, d = 7;
  Buffer x = random_buffer<double>({m, d}, 11), gamma = random_buffer<double>({d}, 12, 0.5, 1.5);
  Buffer beta = random_buffer<double>({d}, 13), c = random_buffer<double>({m, d}, 14);
  Buffer y(DType::f64, {m, d}), mean(DType::f64, {m}), rstd(DType::f64, {m});
  auto loss = [&] {
    Buffer out(DType::f64, {m, d}), mu(DType::f64, {m}), rs(DType::f64, {m});
    layer_norm_forward(ctx, x, gamma, beta, kEps, out, mu, rs);
    double s = 0;
    for (int64_t i = 0; i < out.numel(); ++i) s += out.as<double>()[i] * c.as<double>()[i];
    return s;
  };
  layer_norm_forward(ctx, x, gamma, beta, kEps, y, mean, rstd);
  Buffer dx(DType::f64, {m, d}), dgamma(DType::f64, {d}), dbeta(DType::f64, {d});
  testing::poison(dx);
  layer_norm_backward(ctx, c, x, gamma, mean, rstd, dx, dgamma, dbeta);
  EXPECT_LT(testing::gradient_error(dx, testing::numeric_gradient(x, loss)), 1e-6);
  EXPECT_LT(testing::gradient_error(dgamma, testing::numeric_gradient(gamma, loss)), 1e-6);
  EXPECT_LT(testing::gradient_error(dbeta, testing::numeric_gradient(beta, loss)), 1e-6);
}

TEST(LayerNorm, DxMayAliasDyAndParameterGradientsAccumulate) {
  Context ctx = cpu_context();
  const int64_t m = 33, d = 65;
  Buffer x = random_buffer<double>({m, d}, 21), gamma = random_buffer<double>({d}, 22);
  Buffer beta = random_buffer<double>({d}, 23), dy = random_buffer<double>({m, d}, 24);
  Buffer y(DType::f64, {m, d}), mean(DType::f64, {m}), rstd(DType::f64, {m});
  layer_norm_forward(ctx, x, gamma, beta, kEps, y, mean, rstd);

  Buffer dx(DType::f64, {m, d}), dgamma1(DType::f64, {d}), dbeta1(DType::f64, {d});
  layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx, dgamma1, dbeta1);

  // In place (dx = dy), twice in a row from a non-zero start: start + 2·g for the parameters.
  Buffer dgamma = random_buffer<double>({d}, 25), dbeta = random_buffer<double>({d}, 26);
  Buffer dgamma0 = copy_of(dgamma), dbeta0 = copy_of(dbeta);
  Buffer inplace = copy_of(dy);
  Tensor inplace2d = inplace.tensor().view({m, d});
  layer_norm_backward(ctx, inplace2d, x, gamma, mean, rstd, inplace2d, dgamma, dbeta);
  EXPECT_EQ(testing::max_abs_error(inplace, dx), 0.0);
  layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx, dgamma, dbeta);
  for (int64_t j = 0; j < d; ++j) {
    ASSERT_NEAR(dgamma.as<double>()[j], dgamma0.as<double>()[j] + 2 * dgamma1.as<double>()[j],
                1e-13);
    ASSERT_NEAR(dbeta.as<double>()[j], dbeta0.as<double>()[j] + 2 * dbeta1.as<double>()[j], 1e-13);
  }

  // Undefined dgamma / dbeta (frozen parameters) are skipped; dx is unchanged.
  Buffer dx_only(DType::f64, {m, d});
  layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx_only, Tensor(), Tensor());
  EXPECT_EQ(testing::max_abs_error(dx_only, dx), 0.0);
}

TEST(LayerNorm, ParameterGradientsAreIndependentOfThreadCount) {
  Context ctx = cpu_context();
  const int64_t m = 1001, d = 130;
  Buffer x = random_buffer<float>({m, d}, 31), gamma = random_buffer<float>({d}, 32);
  Buffer beta = random_buffer<float>({d}, 33), dy = random_buffer<float>({m, d}, 34);
  Buffer y(DType::f32, {m, d}), mean(DType::f32, {m}), rstd(DType::f32, {m});
  layer_norm_forward(ctx, x, gamma, beta, kEps, y, mean, rstd);
  Buffer dx1(DType::f32, {m, d}), dg1(DType::f32, {d}), db1(DType::f32, {d});
  Buffer dx2(DType::f32, {m, d}), dg2(DType::f32, {d}), db2(DType::f32, {d});
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx1, dg1, db1);
  omp_set_num_threads(2);
  layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx2, dg2, db2);
  omp_set_num_threads(saved);
  EXPECT_EQ(testing::max_abs_error(dg1, dg2), 0.0);
  EXPECT_EQ(testing::max_abs_error(db1, db2), 0.0);
  EXPECT_EQ(testing::max_abs_error(dx1, dx2), 0.0);
}

TEST(LayerNorm, FloatAgreesWithDouble) {
  Context ctx = cpu_context();
  const int64_t m = 33, d = 65;
  Buffer x = random_buffer<double>({m, d}, 41), gamma = random_buffer<double>({d}, 42);
  Buffer beta = random_buffer<double>({d}, 43), dy = random_buffer<double>({m, d}, 44);
  Buffer xf = to_float(x), gf = to_float(gamma), bf = to_float(beta), dyf = to_float(dy);
  Tensor xf2 = xf.tensor().view({m, d}), dyf2 = dyf.tensor().view({m, d});

  Buffer y(DType::f64, {m, d}), mean(DType::f64, {m}), rstd(DType::f64, {m});
  Buffer yf(DType::f32, {m, d}), meanf(DType::f32, {m}), rstdf(DType::f32, {m});
  layer_norm_forward(ctx, x, gamma, beta, kEps, y, mean, rstd);
  layer_norm_forward(ctx, xf2, gf, bf, kEps, yf, meanf, rstdf);
  EXPECT_LT(testing::max_rel_error(yf, y, 1.0), 1e-5);
  EXPECT_LT(testing::max_rel_error(meanf, mean, 1.0), 1e-6);
  EXPECT_LT(testing::max_rel_error(rstdf, rstd), 1e-5);

  Buffer dx(DType::f64, {m, d}), dg(DType::f64, {d}), db(DType::f64, {d});
  Buffer dxf(DType::f32, {m, d}), dgf(DType::f32, {d}), dbf(DType::f32, {d});
  layer_norm_backward(ctx, dy, x, gamma, mean, rstd, dx, dg, db);
  layer_norm_backward(ctx, dyf2, xf2, gf, meanf, rstdf, dxf, dgf, dbf);
  EXPECT_LT(testing::max_rel_error(dxf, dx, 1.0), 1e-5);
  EXPECT_LT(testing::max_rel_error(dgf, dg, 1.0), 1e-5);
  EXPECT_LT(testing::max_rel_error(dbf, db, 1.0), 1e-5);
}

TEST(LayerNorm, RejectsMismatchedArguments) {
  Context ctx = cpu_context();
  const int64_t m = 3, d = 4;
  Buffer x(DType::f32, {m, d}), g(DType::f32, {d}), b(DType::f32, {d}), y(DType::f32, {m, d});
  Buffer mean(DType::f32, {m}), rstd(DType::f32, {m});
  Buffer g_bad(DType::f32, {d + 1}), y_bad(DType::f32, {m, d + 1}), mean_f64(DType::f64, {m});
  Buffer mean_short(DType::f32, {m - 1}), g_f64(DType::f64, {d});
  Buffer dx(DType::f32, {m, d}), dg(DType::f32, {d}), db(DType::f32, {d});
  EXPECT_NO_THROW(layer_norm_forward(ctx, x, g, b, kEps, y, mean, rstd));
  EXPECT_THROW(layer_norm_forward(ctx, x, g_bad, b, kEps, y, mean, rstd), Error);
  EXPECT_THROW(layer_norm_forward(ctx, x, g, g_bad, kEps, y, mean, rstd), Error);
  EXPECT_THROW(layer_norm_forward(ctx, x, g_f64, b, kEps, y, mean, rstd), Error);
  EXPECT_THROW(layer_norm_forward(ctx, x, g, b, kEps, y_bad, mean, rstd), Error);
  EXPECT_THROW(layer_norm_forward(ctx, x, g, b, kEps, y, mean_f64, rstd), Error);
  EXPECT_THROW(layer_norm_forward(ctx, x, g, b, kEps, y, mean, mean_short), Error);
  EXPECT_THROW(layer_norm_forward(ctx, x, g, b, -1.0, y, mean, rstd), Error);
  EXPECT_NO_THROW(layer_norm_backward(ctx, y, x, g, mean, rstd, dx, dg, db));
  EXPECT_THROW(layer_norm_backward(ctx, y_bad, x, g, mean, rstd, dx, dg, db), Error);
  EXPECT_THROW(layer_norm_backward(ctx, y, x, g, mean, rstd, y_bad, dg, db), Error);
  EXPECT_THROW(layer_norm_backward(ctx, y, x, g, mean, rstd, dx, g_bad, db), Error);
  EXPECT_THROW(layer_norm_backward(ctx, y, x, g, mean, rstd, dx, dg, g_f64), Error);
  EXPECT_THROW(layer_norm_backward(ctx, y, x, g, mean_f64, rstd, dx, dg, db), Error);
}

}  // namespace
}  // namespace tfm
