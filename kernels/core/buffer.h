// Buffer: owning memory for a tensor on the host or a device, for things that live across steps
// (parameters, gradients, optimiser state, test data). Step-scoped memory comes from the Arena.
#pragma once
#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/core/device.h"
#include "kernels/core/tensor.h"

namespace tfm {

class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, std::initializer_list<int64_t> dims, Device device = Device::cpu)
      : view_(nullptr, dtype, device, dims) {
    size_t bytes = view_.bytes() ? view_.bytes() : 1;
    if (device == Device::cuda) {
      view_.data = device_malloc(bytes);
    } else {
      view_.data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
      TFM_CHECK(view_.data != nullptr, "out of host memory allocating ", bytes, " bytes");
      std::memset(view_.data, 0, bytes);
    }
  }
  ~Buffer() { release(); }
  Buffer(Buffer&& o) noexcept : view_(std::exchange(o.view_, Tensor())) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      view_ = std::exchange(o.view_, Tensor());
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const Tensor& tensor() const { return view_; }
  operator const Tensor&() const { return view_; }
  template <class T>
  T* as() const { return view_.as<T>(); }
  int64_t numel() const { return view_.numel(); }

 private:
  void release() {
    if (!view_.data) return;
    if (view_.device == Device::cuda) device_free(view_.data);
    else std::free(view_.data);
    view_.data = nullptr;
  }
  Tensor view_;
};

}  // namespace tfm
