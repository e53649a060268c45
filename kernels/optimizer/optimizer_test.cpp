// Tests of the optimiser CPU twin: Adam against the header's formula evaluated per scalar in
// double over several steps (with and without decoupled weight decay), bias correction at step 1,
// float against double, thread-count independence, argument checks; and clip_grad_norm's
// contract (clip to max_norm exactly, leave small or non-finite gradients alone, return the
// pre-clip norm).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/optimizer/optimizer.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

// One Adam step on one scalar, exactly as the header writes it.
void naive_adam(const AdamHyper& h, double& p, double g, double& m, double& v) {
  m = h.beta1 * m + (1 - h.beta1) * g;
  v = h.beta2 * v + (1 - h.beta2) * g * g;
  double m_hat = m / (1 - std::pow(h.beta1, double(h.step)));
  double v_hat = v / (1 - std::pow(h.beta2, double(h.step)));
  double decay = h.weight_decay > 0 ? h.lr * h.weight_decay * p : 0.0;
  p -= h.lr * m_hat / (std::sqrt(v_hat) + h.eps) + decay;
}

// Adam state in element type T, with parameters and per-step gradients drawn from `seed`.
template <class T>
struct State {
  Buffer params, m, v;
  explicit State(int64_t n, uint64_t seed)
      : params(testing::random_buffer<T>({n}, seed)), m(dtype_of<T>(), {n}), v(dtype_of<T>(), {n}) {}
};

template <class T>
void check_steps_against_formula(double weight_decay, double tolerance) {
  Context ctx = testing::cpu_context();
  const int64_t n = 1001;
  State<T> s(n, 1);
  std::vector<double> p(static_cast<size_t>(n)), m(static_cast<size_t>(n), 0.0), v(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = double(s.params.template as<T>()[i]);
  AdamHyper h;
  h.lr = 1e-3;
  h.weight_decay = weight_decay;
  for (int64_t step = 1; step <= 5; ++step) {
    h.step = step;
    // Gradients of varied scale, some exactly zero.
    Buffer g = testing::random_buffer<T>({n}, 100 + uint64_t(step), -2.0, 2.0);
    for (int64_t i = 0; i < n; i += 17) g.template as<T>()[i] = T(0);
    adam_step(ctx, h, s.params, g, s.m, s.v);
    for (int64_t i = 0; i < n; ++i)
      naive_adam(h, p[size_t(i)], double(g.template as<T>()[i]), m[size_t(i)], v[size_t(i)]);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(double(s.params.template as<T>()[i]), p[size_t(i)], tolerance)
          << "param " << i << " step " << step;
      ASSERT_NEAR(double(s.m.template as<T>()[i]), m[size_t(i)], tolerance) << "m " << i;
      ASSERT_NEAR(double(s.v.template as<T>()[i]), v[size_t(i)], tolerance) << "v " << i;
    }
  }
}

TEST(Adam, StepsMatchTheFormulaInDouble) {
  check_steps_against_formula<double>(0.0, 1e-14);
  check_steps_against_formula<double>(0.01, 1e-14);
}

TEST(Adam, StepsMatchTheFormulaInFloat) {
  // Parameters are O(1) and move by ~lr per step; float holds them to ~1e-7.
  check_steps_against_formula<float>(0.0, 1e-6);
  check_steps_against_formula<float>(0.01, 1e-6);
}

TEST(Adam, FirstUpdateHasMagnitudeLrWhateverTheGradientScale) {
  // At t = 1 bias correction gives m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε) ≈ ±lr.
  // Without it the step would be lr·0.1/sqrt(0.02) ≈ 0.71·lr.
  Context ctx = testing::cpu_context();
  for (double scale : {1e-2, 1.0, 1e4}) {
    const int64_t n = 64;
    State<double> s(n, 2);
    Buffer before(DType::f64, {n});
    std::memcpy(before.tensor().data, s.params.tensor().data, s.params.tensor().bytes());
    Buffer g = testing::random_buffer<double>({n}, 3, 0.5 * scale, scale);
    for (int64_t i = 0; i < n; i += 2) g.as<double>()[i] *= -1;
    AdamHyper h;
    h.lr = 0.01;
    adam_step(ctx, h, s.params, g, s.m, s.v);
    for (int64_t i = 0; i < n; ++i) {
      double delta = s.params.as<double>()[i] - before.as<double>()[i];
      EXPECT_NEAR(std::abs(delta), h.lr, 1e-6 * h.lr) << "scale " << scale << " element " << i;
      EXPECT_EQ(delta < 0, g.as<double>()[i] > 0) << "step goes against the gradient";
    }
  }
}

TEST(Adam, WeightDecayIsDecoupledFromTheGradient) {
  // With zero gradients m = v = 0 and the Adam term vanishes: only p·(1 − lr·wd) remains,
  // whatever the moments would have said (L2 regularisation would have passed through them).
  Context ctx = testing::cpu_context();
  const int64_t n = 33;
  State<double> s(n, 4);
  Buffer before(DType::f64, {n}), zero(DType::f64, {n});
  std::memcpy(before.tensor().data, s.params.tensor().data, s.params.tensor().bytes());
  AdamHyper h;
  h.lr = 0.1;
  h.weight_decay = 0.5;
  h.step = 3;
  adam_step(ctx, h, s.params, zero, s.m, s.v);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_DOUBLE_EQ(s.params.as<double>()[i], before.as<double>()[i] * (1 - 0.1 * 0.5)) << i;
  // And no decay without weight_decay.
  h.weight_decay = 0.0;
  std::memcpy(before.tensor().data, s.params.tensor().data, s.params.tensor().bytes());
  adam_step(ctx, h, s.params, zero, s.m, s.v);
  EXPECT_EQ(std::memcmp(before.tensor().data, s.params.tensor().data, s.params.tensor().bytes()), 0);
}

TEST(Adam, FloatAgreesWithDouble) {
  Context ctx = testing::cpu_context();
  const int64_t n = 513;
  State<double> sd(n, 5);
  State<float> sf(n, 5);
  for (int64_t i = 0; i < n; ++i) sd.params.as<double>()[i] = double(sf.params.as<float>()[i]);
  AdamHyper h;
  h.lr = 1e-3;
  h.weight_decay = 0.01;
  for (int64_t step = 1; step <= 4; ++step) {
    h.step = step;
    // The same gradient values in both precisions.
    Buffer gf = testing::random_buffer<float>({n}, 200 + uint64_t(step));
    Buffer gd(DType::f64, {n});
    for (int64_t i = 0; i < n; ++i) gd.as<double>()[i] = double(gf.as<float>()[i]);
    adam_step(ctx, h, sd.params, gd, sd.m, sd.v);
    adam_step(ctx, h, sf.params, gf, sf.m, sf.v);
  }
  // Parameters and m are O(1), v is O(0.1): float rounding of a few steps stays below 1e-6.
  EXPECT_LE(testing::max_abs_error(sf.params, sd.params), 1e-6);
  EXPECT_LE(testing::max_abs_error(sf.m, sd.m), 1e-6);
  EXPECT_LE(testing::max_abs_error(sf.v, sd.v), 1e-6);
}

TEST(Adam, ResultsDoNotDependOnTheThreadCount) {
  Context ctx = testing::cpu_context();
  const int64_t n = 100003;  // over 2^14 elements: the twin runs in parallel
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    State<float> s(n, 6);
    Buffer g = testing::random_buffer<float>({n}, 7);
    AdamHyper h;
    h.lr = 1e-3;
    h.weight_decay = 0.1;
    adam_step(ctx, h, s.params, g, s.m, s.v);
    h.step = 2;
    adam_step(ctx, h, s.params, g, s.m, s.v);
    runs.emplace_back(s.params.as<float>(), s.params.as<float>() + n);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), sizeof(float) * size_t(n)), 0);
}

template <class F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Adam, RejectsBadArguments) {
  Context ctx = testing::cpu_context();
  State<float> s(10, 8);
  Buffer g(DType::f32, {10}), short_g(DType::f32, {9}), g64(DType::f64, {10}), copy(DType::bf16, {10});
  AdamHyper h;
  h.lr = 1e-3;
  expect_error([&] { adam_step(ctx, h, s.params, short_g, s.m, s.v); }, "grads has 9 elements");
  expect_error([&] { adam_step(ctx, h, s.params, g64, s.m, s.v); }, "grads is f64");
  expect_error([&] { adam_step(ctx, h, s.params, g, s.m, s.v, copy); }, "working copy");
  AdamHyper zero_step = h;
  zero_step.step = 0;
  expect_error([&] { adam_step(ctx, zero_step, s.params, g, s.m, s.v); }, "step 0");
  Context cuda = ctx;
  cuda.device = Device::cuda;
  expect_error([&] { adam_step(cuda, h, s.params, g, s.m, s.v); }, "context runs on cuda");
  Buffer i32(DType::i32, {10}), mi(DType::i32, {10}), vi(DType::i32, {10}), gi(DType::i32, {10});
  expect_error([&] { adam_step(ctx, h, i32, gi, mi, vi); }, "f32 or f64");
}

double norm_of(const Buffer& b) {
  double s = 0;
  for (int64_t i = 0; i < b.numel(); ++i) s += b.as<double>()[i] * b.as<double>()[i];
  return std::sqrt(s);
}

TEST(ClipGradNorm, ScalesLargeGradientsToMaxNormExactly) {
  Context ctx = testing::cpu_context();
  Buffer g = testing::random_buffer<double>({40000}, 9);
  Buffer before(DType::f64, {40000});
  std::memcpy(before.tensor().data, g.tensor().data, g.tensor().bytes());
  const double norm = norm_of(g);
  ASSERT_GT(norm, 5.0);
  EXPECT_NEAR(clip_grad_norm(ctx, g, 5.0), norm, 1e-12 * norm);  // the pre-clip norm
  EXPECT_NEAR(norm_of(g), 5.0, 1e-12);
  for (int64_t i = 0; i < g.numel(); ++i)  // same direction
    ASSERT_NEAR(g.as<double>()[i], before.as<double>()[i] * 5.0 / norm, 1e-15) << i;
}

TEST(ClipGradNorm, LeavesSmallGradientsUntouchedAndMeasuresWithoutLimit) {
  Context ctx = testing::cpu_context();
  Buffer g = testing::random_buffer<float>({1000}, 10, -0.01, 0.01);
  Buffer before(DType::f32, {1000});
  std::memcpy(before.tensor().data, g.tensor().data, g.tensor().bytes());
  double expected = 0;
  for (int64_t i = 0; i < 1000; ++i) expected += double(g.as<float>()[i]) * g.as<float>()[i];
  expected = std::sqrt(expected);
  EXPECT_NEAR(clip_grad_norm(ctx, g, 1.0), expected, 1e-12);
  EXPECT_EQ(std::memcmp(before.tensor().data, g.tensor().data, g.tensor().bytes()), 0);
  EXPECT_NEAR(clip_grad_norm(ctx, g, 0.0), expected, 1e-12);  // max_norm <= 0 only measures
  EXPECT_NEAR(clip_grad_norm(ctx, g, -1.0), expected, 1e-12);
  EXPECT_EQ(std::memcmp(before.tensor().data, g.tensor().data, g.tensor().bytes()), 0);
}

TEST(ClipGradNorm, LeavesGradientsAloneWhenTheNormIsNotFinite) {
  Context ctx = testing::cpu_context();
  for (double bad : {std::numeric_limits<double>::infinity(), std::nan("")}) {
    Buffer g = testing::random_buffer<double>({500}, 11, -10.0, 10.0);
    g.as<double>()[123] = bad;
    Buffer before(DType::f64, {500});
    std::memcpy(before.tensor().data, g.tensor().data, g.tensor().bytes());
    EXPECT_FALSE(std::isfinite(clip_grad_norm(ctx, g, 1.0)));
    EXPECT_EQ(std::memcmp(before.tensor().data, g.tensor().data, g.tensor().bytes()), 0);
  }
}

}  // namespace
}  // namespace tfm
