#include "model/parameters.h"

#include <cmath>

#include "kernels/core/check.h"

namespace tfm {

namespace {

// splitmix64 (Steele et al.): a tiny, well-mixed generator with a portable definition, so
// initial weights are the same on every compiler and standard library.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                               // Box–Muller
    double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * M_PI * u2);
  }
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

int ParameterStore::add(const std::string& name, std::vector<int64_t> shape, Init init) {
  TFM_CHECK(!allocated(), "parameter ", name, " registered after allocation");
  TFM_CHECK(!by_name_.count(name), "parameter ", name, " registered twice");
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  params_.push_back(ParamInfo{name, std::move(shape), total_, n, init});
  by_name_[name] = int(params_.size() - 1);
  total_ += n;
  return int(params_.size() - 1);
}

void ParameterStore::allocate(DType dtype, Device device) {
  TFM_CHECK(dtype == DType::f32 || dtype == DType::f64,
            "parameters: master weights are f32 (or f64 in tests), got ", dtype_name(dtype));
  values_ = Buffer(dtype, {total_}, device);
  grads_ = Buffer(dtype, {total_}, device);
}

int ParameterStore::index(const std::string& name) const {
  auto it = by_name_.find(name);
  TFM_CHECK(it != by_name_.end(), "no parameter named ", name);
  return it->second;
}

Tensor ParameterStore::view(const Buffer& flat, int i) const {
  const ParamInfo& p = info(i);
  Tensor t = flat.tensor();
  t.data = static_cast<char*>(t.data) + p.offset * int64_t(dtype_size(t.dtype));
  t.rank = int(p.shape.size());
  for (int d = 0; d < t.rank; ++d) t.shape[size_t(d)] = p.shape[size_t(d)];
  return t;
}

Tensor ParameterStore::fused(const Buffer& flat, int first, int count) const {
  const ParamInfo& head = info(first);
  for (int j = 1; j < count; ++j) {
    const ParamInfo& p = info(first + j);
    TFM_CHECK(p.shape == head.shape && p.offset == head.offset + j * head.numel,
              "parameters ", head.name, " and ", p.name, " are not adjacent with equal shapes");
  }
  Tensor t = view(flat, first);
  t.shape[0] *= count;
  return t;
}

void ParameterStore::initialize(uint64_t seed) {
  TFM_CHECK(allocated(), "parameters: initialize() before allocate()");
  TFM_CHECK(values_.tensor().device == Device::cpu, "parameters: initialise on the host");
  for (const ParamInfo& p : params_) {
    SplitMix64 rng{seed ^ fnv1a(p.name)};
    // fan_in/fan_out of a [out, in] weight, as torch.nn.init.xavier_uniform_ computes them.
    double fan_out = double(p.shape[0]), fan_in = p.shape.size() > 1 ? double(p.shape[1]) : 1.0;
    double bound = std::sqrt(6.0 / (fan_in + fan_out));
    // Embeddings: N(0, d^-1/2), so that after the √d scaling their entries are of unit size.
    double stddev = p.shape.size() > 1 ? 1.0 / std::sqrt(double(p.shape[1])) : 1.0;
    auto value = [&]() -> double {
      switch (p.init) {
        case Init::zeros: return 0.0;
        case Init::ones: return 1.0;
        case Init::xavier_uniform: return (2.0 * rng.uniform() - 1.0) * bound;
        case Init::normal_scaled: return rng.normal() * stddev;
      }
      return 0.0;
    };
    char* base = static_cast<char*>(values_.tensor().data);
    if (dtype() == DType::f32) {
      float* w = reinterpret_cast<float*>(base) + p.offset;
      for (int64_t i = 0; i < p.numel; ++i) w[i] = float(value());
    } else {
      double* w = reinterpret_cast<double*>(base) + p.offset;
      for (int64_t i = 0; i < p.numel; ++i) w[i] = value();
    }
  }
}

}  // namespace tfm
