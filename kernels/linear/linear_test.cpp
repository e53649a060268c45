// Tests of the linear layer's CPU twin: forward against the definition, gradients against finite
// differences in double, the accumulation rules, float/double agreement and argument checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "kernels/linear/linear.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using testing::cpu_context;
using testing::random_buffer;

// y[r, n] = act(Σ_k x[r, k] · w[n, k] + b[n]) by the definition, in double.
void naive_linear(const double* x, const double* w, const double* b, Activation act, int64_t m,
                  int64_t k, int64_t n, double* y) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) {
      double acc = b ? b[j] : 0.0;
      for (int64_t p = 0; p < k; ++p) acc += x[r * k + p] * w[j * k + p];
      y[r * n + j] = act == Activation::relu ? std::max(acc, 0.0) : acc;
    }
}

Buffer to_float(const Tensor& t) {
  Buffer f(DType::f32, {t.numel()});
  for (int64_t i = 0; i < t.numel(); ++i) f.as<float>()[i] = float(t.as<double>()[i]);
  return f;
}

// A new buffer with t's dtype, shape and contents.
Buffer copy_of(const Tensor& t) {
  Buffer c = t.rank == 1   ? Buffer(t.dtype, {t.shape[0]})
             : t.rank == 2 ? Buffer(t.dtype, {t.shape[0], t.shape[1]})
                           : Buffer(t.dtype, {t.shape[0], t.shape[1], t.shape[2]});
  std::copy_n(static_cast<const char*>(t.data), t.bytes(), static_cast<char*>(c.tensor().data));
  return c;
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.as<double>()[i] * b.as<double>()[i];
  return s;
}

TEST(Linear, ForwardMatchesDefinitionOnOddShapes) {
  Context ctx = cpu_context();
  for (int64_t m : {1, 7, 33})
    for (int64_t k : {5, 17, 65})
      for (int64_t n : {5, 17, 65})
        for (Activation act : {Activation::none, Activation::relu})
          for (bool with_bias : {false, true}) {
            Buffer x = random_buffer<double>({m, k}, 1), w = random_buffer<double>({n, k}, 2);
            Buffer b = random_buffer<double>({n}, 3);
            Buffer y(DType::f64, {m, n}), want(DType::f64, {m, n});
            testing::poison(y);
            linear_forward(ctx, x, w, with_bias ? b.tensor() : Tensor(), act, y);
            naive_linear(x.as<double>(), w.as<double>(), with_bias ? b.as<double>() : nullptr,
                         act, m, k, n, want.as<double>());
            EXPECT_LT(testing::max_abs_error(y, want), 1e-13)
                << "m=" << m << " k=" << k << " n=" << n << " relu=" << (act == Activation::relu)
                << " bias=" << with_bias;
          }
}

TEST(Linear, HigherRankInputIsRowsTimesLastDimension) {
  Context ctx = cpu_context();
  Buffer x = random_buffer<double>({3, 5, 7}, 4), w = random_buffer<double>({9, 7}, 5);
  Buffer b = random_buffer<double>({9}, 6);
  Buffer y(DType::f64, {3, 5, 9}), want(DType::f64, {15, 9});
  testing::poison(y);
  linear_forward(ctx, x, w, b, Activation::relu, y);
  naive_linear(x.as<double>(), w.as<double>(), b.as<double>(), Activation::relu, 15, 7, 9,
               want.as<double>());
  EXPECT_LT(testing::max_abs_error(y, want), 1e-13);

  // Backward on the rank-3 views equals backward on the flattened [15, 7] views.
  Buffer dy = random_buffer<double>({3, 5, 9}, 7), dy2 = copy_of(dy);
  Buffer dx(DType::f64, {3, 5, 7}), dx2(DType::f64, {15, 7});
  Buffer dw(DType::f64, {9, 7}), dw2(DType::f64, {9, 7});
  linear_backward(ctx, x, w, y, Activation::relu, dy, dx, dw, Tensor());
  linear_backward(ctx, x.tensor().view({15, 7}), w, y.tensor().view({15, 9}), Activation::relu,
                  dy2.tensor().view({15, 9}), dx2, dw2, Tensor());
  EXPECT_EQ(testing::max_abs_error(dx, dx2), 0.0);
  EXPECT_EQ(testing::max_abs_error(dw, dw2), 0.0);
}

TEST(Linear, NoInputFeaturesGivesTheBias) {
  // K = 0: the product is an empty sum, so y = act(b) in every row (BLAS alone would leave the
  // poisoned output NaN), and db still receives the column sums of dy.
  Context ctx = cpu_context();
  Buffer x(DType::f64, {3, 0}), w(DType::f64, {4, 0}), b = random_buffer<double>({4}, 8);
  Buffer y(DType::f64, {3, 4}), dy = random_buffer<double>({3, 4}, 9), db(DType::f64, {4});
  testing::poison(y);
  linear_forward(ctx, x, w, b, Activation::relu, y);
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t j = 0; j < 4; ++j)
      ASSERT_EQ(y.as<double>()[r * 4 + j], std::max(b.as<double>()[j], 0.0)) << r << ", " << j;
  linear_backward(ctx, x, w, y, Activation::none, dy, x, Tensor(), db);
  for (int64_t j = 0; j < 4; ++j) {
    double sum = 0;
    for (int64_t r = 0; r < 3; ++r) sum += dy.as<double>()[r * 4 + j];
    EXPECT_NEAR(db.as<double>()[j], sum, 1e-15);
  }
}

// Loss = Σ c ⊙ y for a fixed random c; its gradient with respect to y is c.
TEST(Linear, GradientsMatchFiniteDifferences) {
  Context ctx = cpu_context();
  const int64_t m = 7, k = 5, n = 6;
  for (Activation act : {Activation::none, Activation::relu}) {
    Buffer x = random_buffer<double>({m, k}, 11), w = random_buffer<double>({n, k}, 12);
    Buffer b = random_buffer<double>({n}, 13), c = random_buffer<double>({m, n}, 14);
    Buffer y(DType::f64, {m, n});

    // Finite differences across the ReLU kink would be meaningless: the seeds above keep every
    // pre-activation well away from 0 (checked, so a change of seeds cannot silently break it).
    linear_forward(ctx, x, w, b, Activation::none, y);
    double closest = 1e9;
    int64_t positive = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      closest = std::min(closest, std::abs(y.as<double>()[i]));
      positive += y.as<double>()[i] > 0;
    }
    ASSERT_GT(closest, 1e-3) << "pick seeds whose pre-activations avoid the ReLU kink";
    ASSERT_GT(positive, 0);
    ASSERT_LT(positive, y.numel()) << "the ReLU case should mask some outputs";

    auto loss = [&] {
      Buffer out(DType::f64, {m, n});
      linear_forward(ctx, x, w, b, act, out);
      return dot(out, c);
    };
    linear_forward(ctx, x, w, b, act, y);
    Buffer dy = copy_of(c), dx(DType::f64, {m, k}), dw(DType::f64, {n, k}), db(DType::f64, {n});
    testing::poison(dx);  // written, not accumulated
    linear_backward(ctx, x, w, y, act, dy, dx, dw, db);

    const char* name = act == Activation::relu ? "relu" : "none";
    EXPECT_LT(testing::gradient_error(dx, testing::numeric_gradient(x, loss)), 1e-6) << name;
    EXPECT_LT(testing::gradient_error(dw, testing::numeric_gradient(w, loss)), 1e-6) << name;
    EXPECT_LT(testing::gradient_error(db, testing::numeric_gradient(b, loss)), 1e-6) << name;

    // dy was masked in place by (y > 0) for relu, untouched otherwise.
    for (int64_t i = 0; i < dy.numel(); ++i) {
      double expected = (act == Activation::none || y.as<double>()[i] > 0) ? c.as<double>()[i] : 0;
      ASSERT_EQ(dy.as<double>()[i], expected) << name << " element " << i;
    }
  }
}

TEST(Linear, ParameterGradientsAccumulateAndDxAccumulatesOnRequest) {
  Context ctx = cpu_context();
  const int64_t m = 9, k = 17, n = 5;
  Buffer x = random_buffer<double>({m, k}, 21), w = random_buffer<double>({n, k}, 22);
  Buffer b = random_buffer<double>({n}, 23), y(DType::f64, {m, n});
  linear_forward(ctx, x, w, b, Activation::relu, y);
  Buffer dy = random_buffer<double>({m, n}, 24);

  // One call from zero gives the plain gradients g.
  Buffer dx1(DType::f64, {m, k}), dw1(DType::f64, {n, k}), db1(DType::f64, {n});
  Buffer dy1 = copy_of(dy);
  linear_backward(ctx, x, w, y, Activation::relu, dy1, dx1, dw1, db1);

  // Two calls from a non-zero start give start + 2g; accumulate_dx adds instead of writing.
  Buffer dw = random_buffer<double>({n, k}, 25), db = random_buffer<double>({n}, 26);
  Buffer dx = random_buffer<double>({m, k}, 27);
  Buffer dw0 = copy_of(dw), db0 = copy_of(db), dx0 = copy_of(dx);
  for (int call = 0; call < 2; ++call) {
    Buffer dy_call = copy_of(dy);
    linear_backward(ctx, x, w, y, Activation::relu, dy_call, dx, dw, db, /*accumulate_dx=*/true);
  }
  for (int64_t i = 0; i < dw.numel(); ++i)
    ASSERT_NEAR(dw.as<double>()[i], dw0.as<double>()[i] + 2 * dw1.as<double>()[i], 1e-13);
  for (int64_t i = 0; i < db.numel(); ++i)
    ASSERT_NEAR(db.as<double>()[i], db0.as<double>()[i] + 2 * db1.as<double>()[i], 1e-13);
  for (int64_t i = 0; i < dx.numel(); ++i)
    ASSERT_NEAR(dx.as<double>()[i], dx0.as<double>()[i] + 2 * dx1.as<double>()[i], 1e-13);

  // Without accumulate_dx, dx is overwritten whatever it held.
  Buffer dy3 = copy_of(dy);
  linear_backward(ctx, x, w, y, Activation::relu, dy3, dx, Tensor(), Tensor());
  EXPECT_EQ(testing::max_abs_error(dx, dx1), 0.0);
}

TEST(Linear, UndefinedGradientsAreSkipped) {
  Context ctx = cpu_context();
  const int64_t m = 4, k = 3, n = 6;
  Buffer x = random_buffer<double>({m, k}, 31), w = random_buffer<double>({n, k}, 32);
  Buffer y(DType::f64, {m, n});
  linear_forward(ctx, x, w, Tensor(), Activation::none, y);
  Buffer dy = random_buffer<double>({m, n}, 33);
  Buffer dw_all(DType::f64, {n, k}), db_all(DType::f64, {n}), dx_all(DType::f64, {m, k});
  linear_backward(ctx, x, w, y, Activation::none, dy, dx_all, dw_all, db_all);
  // Each gradient alone equals its value from the full call; y is not needed without relu.
  Buffer dw(DType::f64, {n, k}), db(DType::f64, {n}), dx(DType::f64, {m, k});
  linear_backward(ctx, x, w, Tensor(), Activation::none, dy, Tensor(), dw, Tensor());
  linear_backward(ctx, x, w, Tensor(), Activation::none, dy, Tensor(), Tensor(), db);
  linear_backward(ctx, x, w, Tensor(), Activation::none, dy, dx, Tensor(), Tensor());
  EXPECT_EQ(testing::max_abs_error(dw, dw_all), 0.0);
  EXPECT_EQ(testing::max_abs_error(db, db_all), 0.0);
  EXPECT_EQ(testing::max_abs_error(dx, dx_all), 0.0);
}

TEST(Linear, FloatAgreesWithDouble) {
  Context ctx = cpu_context();
  const int64_t m = 33, k = 65, n = 17;
  Buffer x = random_buffer<double>({m, k}, 41), w = random_buffer<double>({n, k}, 42);
  Buffer b = random_buffer<double>({n}, 43), dy = random_buffer<double>({m, n}, 44);
  Buffer xf = to_float(x), wf = to_float(w), bf = to_float(b), dyf = to_float(dy);
  Tensor xf2 = xf.tensor().view({m, k}), wf2 = wf.tensor().view({n, k});
  Tensor dyf2 = dyf.tensor().view({m, n});

  Buffer y(DType::f64, {m, n}), yf(DType::f32, {m, n});
  linear_forward(ctx, x, w, b, Activation::relu, y);
  linear_forward(ctx, xf2, wf2, bf, Activation::relu, yf);
  EXPECT_LT(testing::max_rel_error(yf, y, 1.0), 1e-5);

  Buffer dx(DType::f64, {m, k}), dw(DType::f64, {n, k}), db(DType::f64, {n});
  Buffer dxf(DType::f32, {m, k}), dwf(DType::f32, {n, k}), dbf(DType::f32, {n});
  linear_backward(ctx, x, w, y, Activation::relu, dy, dx, dw, db);
  linear_backward(ctx, xf2, wf2, yf, Activation::relu, dyf2, dxf, dwf, dbf);
  EXPECT_LT(testing::max_rel_error(dxf, dx, 1.0), 1e-5);
  EXPECT_LT(testing::max_rel_error(dwf, dw, 1.0), 1e-5);
  EXPECT_LT(testing::max_rel_error(dbf, db, 1.0), 1e-5);
}

TEST(Linear, RejectsMismatchedArguments) {
  Context ctx = cpu_context();
  Buffer x(DType::f32, {4, 3}), w(DType::f32, {5, 3}), b(DType::f32, {5}), y(DType::f32, {4, 5});
  Buffer w_bad(DType::f32, {5, 4}), b_bad(DType::f32, {4}), y_bad(DType::f32, {4, 6});
  Buffer y_rank(DType::f32, {20}), x_f64(DType::f64, {4, 3});
  EXPECT_NO_THROW(linear_forward(ctx, x, w, b, Activation::relu, y));
  EXPECT_THROW(linear_forward(ctx, x, w_bad, b, Activation::none, y), Error);
  EXPECT_THROW(linear_forward(ctx, x, w, b_bad, Activation::none, y), Error);
  EXPECT_THROW(linear_forward(ctx, x, w, b, Activation::none, y_bad), Error);
  EXPECT_THROW(linear_forward(ctx, x, w, b, Activation::none, y_rank), Error);
  EXPECT_THROW(linear_forward(ctx, x_f64, w, b, Activation::none, y), Error);

  Buffer dy(DType::f32, {4, 5}), dx(DType::f32, {4, 3});
  Buffer dw(DType::f32, {5, 3}), db(DType::f32, {5});
  Buffer dw_bad(DType::f32, {3, 5}), dx_bad(DType::f32, {4, 5}), db_f64(DType::f64, {5});
  EXPECT_NO_THROW(linear_backward(ctx, x, w, y, Activation::relu, dy, dx, dw, db));
  EXPECT_THROW(linear_backward(ctx, x, w, y, Activation::none, dy, dx, dw_bad, db), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, y, Activation::none, dy, dx_bad, dw, db), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, y, Activation::none, dy, dx, dw, db_f64), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, y, Activation::none, y_bad, dx, dw, db), Error);
  EXPECT_THROW(linear_backward(ctx, x, w, Tensor(), Activation::relu, dy, dx, dw, db), Error);

  // Host tensors under a CUDA context are refused before anything runs.
  Context gpu;
  gpu.device = Device::cuda;
  EXPECT_THROW(linear_forward(gpu, x, w, Tensor(), Activation::none, y), Error);
}

}  // namespace
}  // namespace tfm
