#include "tests/testing/testing.h"

#include <cmath>
#include <limits>

namespace tfm::testing {

namespace {
double element(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::f32: return t.as<float>()[i];
    case DType::f64: return t.as<double>()[i];
    case DType::i32: return t.as<int32_t>()[i];
    default: fail(cat("testing: unsupported dtype ", dtype_name(t.dtype)));
  }
}
}  // namespace

void poison(const Tensor& t) {
  if (t.dtype == DType::f32) {
    for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = std::nanf("");
  } else if (t.dtype == DType::f64) {
    for (int64_t i = 0; i < t.numel(); ++i) t.as<double>()[i] = std::nan("");
  } else {
    fail("poison: floating tensors only");
  }
}

double max_rel_error(const Tensor& actual, const Tensor& expected, double floor) {
  TFM_CHECK(actual.numel() == expected.numel(), "max_rel_error: ", actual.shape_str(), " vs ",
            expected.shape_str());
  double worst = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double a = element(actual, i), e = element(expected, i);
    double err = std::abs(a - e) / std::max(std::abs(e), floor);
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

double max_abs_error(const Tensor& actual, const Tensor& expected) {
  TFM_CHECK(actual.numel() == expected.numel(), "max_abs_error: ", actual.shape_str(), " vs ",
            expected.shape_str());
  double worst = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double err = std::abs(element(actual, i) - element(expected, i));
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

std::vector<double> numeric_gradient(const Tensor& x, const std::function<double()>& loss,
                                     double h) {
  double* p = x.as<double>();
  std::vector<double> grad(size_t(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) {
    double saved = p[i];
    p[i] = saved + h;
    double up = loss();
    p[i] = saved - h;
    double down = loss();
    p[i] = saved;
    grad[size_t(i)] = (up - down) / (2 * h);
  }
  return grad;
}

double gradient_error(const Tensor& analytic, const std::vector<double>& numeric, double floor) {
  TFM_CHECK(analytic.numel() == int64_t(numeric.size()), "gradient_error: size mismatch");
  const double* a = analytic.as<double>();
  double worst = 0;
  for (size_t i = 0; i < numeric.size(); ++i) {
    double err = std::abs(a[i] - numeric[i]) / std::max(std::abs(numeric[i]), floor);
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

}  // namespace tfm::testing
