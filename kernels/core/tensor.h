// Tensor: a non-owning, contiguous, row-major view (pointer, dtype, device, shape up to rank 4).
// Ops take views and never allocate; owners are the arena, the parameter store and buffers.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/core/dtype.h"

namespace tfm {

struct Tensor {
  static constexpr int kMaxRank = 4;

  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};

  Tensor() = default;
  Tensor(void* data_, DType dtype_, Device device_, std::initializer_list<int64_t> dims)
      : data(data_), dtype(dtype_), device(device_) {
    TFM_CHECK(dims.size() <= kMaxRank, "tensor rank ", dims.size(), " exceeds ", kMaxRank);
    for (int64_t d : dims) {
      TFM_CHECK(d >= 0, "negative tensor dimension ", d);
      shape[rank++] = d;
    }
  }

  bool defined() const { return data != nullptr; }
  int64_t dim(int i) const {
    if (i < 0) i += rank;
    TFM_CHECK(i >= 0 && i < rank, "dimension ", i, " out of range for rank ", rank);
    return shape[i];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }

  template <class T>
  T* as() const {
    TFM_CHECK(dtype == dtype_of<T>(), "tensor holds ", dtype_name(dtype), ", accessed as ",
              dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }

  // Same memory, new shape (element count must match).
  Tensor view(std::initializer_list<int64_t> dims) const {
    Tensor t(data, dtype, device, dims);
    TFM_CHECK(t.numel() == numel(), "view ", t.shape_str(), " does not match ", shape_str());
    return t;
  }
  // Rows [begin, begin + count) along the first dimension.
  Tensor rows(int64_t begin, int64_t count) const {
    TFM_CHECK(rank >= 1 && begin >= 0 && count >= 0 && begin + count <= shape[0],
              "rows [", begin, ", ", begin + count, ") out of ", shape_str());
    Tensor t = *this;
    t.shape[0] = count;
    t.data = static_cast<char*>(data) + begin * (bytes() / (shape[0] ? shape[0] : 1));
    return t;
  }

  std::string shape_str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

// Precondition helpers for ops: name the op and the argument in every message.
inline void expect_shape(const Tensor& t, std::initializer_list<int64_t> dims, const char* op,
                         const char* arg) {
  Tensor want(nullptr, t.dtype, t.device, dims);
  bool ok = t.rank == want.rank;
  for (int i = 0; ok && i < t.rank; ++i) ok = t.shape[i] == want.shape[i];
  TFM_CHECK(ok, op, ": ", arg, " has shape ", t.shape_str(), ", expected ", want.shape_str());
}
inline void expect_dtype(const Tensor& t, DType d, const char* op, const char* arg) {
  TFM_CHECK(t.dtype == d, op, ": ", arg, " is ", dtype_name(t.dtype), ", expected ",
            dtype_name(d));
}
inline void expect_same_dtype(const Tensor& a, const Tensor& b, const char* op, const char* arg) {
  TFM_CHECK(a.dtype == b.dtype, op, ": ", arg, " is ", dtype_name(b.dtype), ", expected ",
            dtype_name(a.dtype));
}

// A parameter-side tensor (a weight, bias or norm scale, or its gradient) beside activations of
// dtype `activation`: the same dtype, or — mixed precision, on the GPU only — f32 beside bf16/f16
// activations (fp32 master gradients written straight from bf16 inputs). The CPU twins compute
// in one dtype.
inline void expect_param_dtype(Device device, DType activation, const Tensor& t, const char* op,
                               const char* arg) {
  const bool mixed = device == Device::cuda && t.dtype == DType::f32 &&
                     (activation == DType::bf16 || activation == DType::f16);
  TFM_CHECK(t.dtype == activation || mixed, op, ": ", arg, " is ", dtype_name(t.dtype),
            ", expected ", dtype_name(activation),
            device == Device::cuda ? " (or f32 beside bf16/f16 activations)" : "");
}

}  // namespace tfm
