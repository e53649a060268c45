#include "model/parameters.h"

#include <cmath>

#include "kernels/core/check.h"
#include "kernels/core/device.h"
#include "kernels/elementwise/elementwise.h"

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

ParameterStore::ParameterStore(int tp_rank, int tp_size) : tp_rank_(tp_rank), tp_size_(tp_size) {
  TFM_CHECK(tp_size >= 1 && tp_rank >= 0 && tp_rank < tp_size, "parameters: tensor-parallel rank ",
            tp_rank, " of ", tp_size);
}

int ParameterStore::add(const std::string& name, std::vector<int64_t> shape, Init init, Split split) {
  TFM_CHECK(!allocated(), "parameter ", name, " registered after allocation");
  TFM_CHECK(!by_name_.count(name), "parameter ", name, " registered twice");
  ParamInfo p;
  p.name = name;
  p.shape = shape;
  p.local_shape = shape;
  p.split = tp_size_ == 1 ? Split::replicated : split;
  p.init = init;
  if (p.sharded()) {
    const size_t dim = p.split == Split::rows ? 0 : 1;
    TFM_CHECK(dim < shape.size() && shape[dim] % tp_size_ == 0, "parameter ", name, ": dimension ",
              dim, " cannot be split over ", tp_size_, " tensor-parallel ranks");
    p.local_shape[dim] = shape[dim] / tp_size_;
    p.split_first = int64_t(tp_rank_) * p.local_shape[dim];
  }
  p.numel = 1;
  for (int64_t d : p.local_shape) p.numel *= d;
  p.offset = total_;
  total_ += p.numel;
  params_.push_back(std::move(p));
  by_name_[name] = int(params_.size() - 1);
  return int(params_.size() - 1);
}

void ParameterStore::allocate(DType dtype, Device device, int64_t pad_multiple, DType compute) {
  TFM_CHECK(dtype == DType::f32 || dtype == DType::f64,
            "parameters: master weights are f32 (or f64 in tests), got ", dtype_name(dtype));
  TFM_CHECK(pad_multiple >= 1, "parameters: pad_multiple must be positive, got ", pad_multiple);
  if (compute == DType::f32 && dtype == DType::f64) compute = dtype;  // the default follows f64
  TFM_CHECK(compute == dtype || (dtype == DType::f32 && (compute == DType::bf16 || compute == DType::f16)),
            "parameters: compute dtype ", dtype_name(compute), " beside ", dtype_name(dtype),
            " master weights (mixed precision is f32 masters with a bf16 or f16 working copy)");
  const int64_t n = (total_ + pad_multiple - 1) / pad_multiple * pad_multiple;
  values_ = Buffer(dtype, {n}, device);
  grads_ = Buffer(dtype, {n}, device);
  working_ = compute == dtype ? Buffer() : Buffer(compute, {n}, device);
  if (device != Device::cpu) {  // host buffers start zeroed; device memory does not
    Context ctx;
    ctx.device = device;
    for (const Buffer* b : {&values_, &grads_, &working_})
      if (b->tensor().defined()) fill_zero(ctx, b->tensor());
  }
}

void ParameterStore::refresh_working_copy(const Context& ctx) {
  if (has_working_copy()) convert(ctx, values_.tensor(), working_.tensor());
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
  t.rank = int(p.local_shape.size());
  for (int d = 0; d < t.rank; ++d) t.shape[size_t(d)] = p.local_shape[size_t(d)];
  return t;
}

Tensor ParameterStore::fused(const Buffer& flat, int first, int count) const {
  const ParamInfo& head = info(first);
  for (int j = 1; j < count; ++j) {
    const ParamInfo& p = info(first + j);
    TFM_CHECK(p.local_shape == head.local_shape && p.offset == head.offset + j * head.numel,
              "parameters ", head.name, " and ", p.name, " are not adjacent with equal shapes");
  }
  Tensor t = view(flat, first);
  t.shape[0] *= count;
  return t;
}

void ParameterStore::initialize(uint64_t seed) {
  TFM_CHECK(allocated(), "parameters: initialize() before allocate()");
  if (device() != Device::cpu) {
    // Drawn on the host (the generator is host code), then copied; the caller refreshes the
    // working copy.
    Buffer host(dtype(), {values_.tensor().numel()});
    std::swap(values_, host);
    initialize(seed);
    std::swap(values_, host);
    copy_to_device(values_.tensor().data, host.tensor().data, host.tensor().bytes());
    return;
  }
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
    // Draw the logical tensor in row-major order and keep this rank's part of it (a vector is
    // one column).
    TFM_CHECK(p.shape.size() <= 2, "parameter ", p.name, ": only vectors and matrices are initialised");
    const int64_t rows = p.shape.size() > 0 ? p.shape[0] : 1;
    const int64_t cols = p.shape.size() > 1 ? p.shape[1] : 1;
    const int64_t local_rows = p.local_shape.size() > 0 ? p.local_shape[0] : 1;
    const int64_t local_cols = p.local_shape.size() > 1 ? p.local_shape[1] : 1;
    const int64_t row0 = p.split == Split::rows ? p.split_first : 0;
    const int64_t col0 = p.split == Split::cols ? p.split_first : 0;
    char* base = static_cast<char*>(values_.tensor().data);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const double x = value();  // drawn for every logical element, kept or not
        if (r < row0 || r >= row0 + local_rows || c < col0 || c >= col0 + local_cols) continue;
        const int64_t i = p.offset + (r - row0) * local_cols + (c - col0);
        if (dtype() == DType::f32) reinterpret_cast<float*>(base)[i] = float(x);
        else reinterpret_cast<double*>(base)[i] = x;
      }
    }
  }
}

}  // namespace tfm
