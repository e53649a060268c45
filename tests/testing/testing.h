// Helpers shared by the tests: seeded random host buffers, error measures, and central finite
// differences for gradient checks (run in double, where the ops are exact enough to compare
// to ~1e-7 relative).
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "kernels/core/buffer.h"
#include "kernels/core/context.h"

namespace tfm::testing {

inline Context cpu_context() { return Context{}; }

// Uniform in [lo, hi), from a fixed seed so failures reproduce.
template <class T>
void fill_uniform(const Tensor& t, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  T* p = t.as<T>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = T(dist(rng));
}

template <class T>
Buffer random_buffer(std::initializer_list<int64_t> dims, uint64_t seed, double lo = -1.0,
                     double hi = 1.0) {
  Buffer b(dtype_of<T>(), dims);
  fill_uniform<T>(b, seed, lo, hi);
  return b;
}

// Fills with NaN so a test notices any output element an op forgot to write.
void poison(const Tensor& t);

// max_i |a_i − b_i| / max(|b_i|, floor): relative error with an absolute floor for tiny values.
double max_rel_error(const Tensor& actual, const Tensor& expected, double floor = 1e-3);
double max_abs_error(const Tensor& actual, const Tensor& expected);

// d loss / d x[i] for every element of x (f64), by central differences with step h; x is
// restored afterwards. loss() must be a pure function of the buffers it reads.
std::vector<double> numeric_gradient(const Tensor& x, const std::function<double()>& loss,
                                     double h = 1e-6);

// Compares an analytic gradient (f64 tensor) with numeric_gradient; returns the max relative
// error with an absolute floor.
double gradient_error(const Tensor& analytic, const std::vector<double>& numeric,
                      double floor = 1e-6);

}  // namespace tfm::testing
