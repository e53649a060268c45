// Arena: one block of memory handed out by bumping a pointer, reset at the start of every step,
// so the training step does no allocation once the arena has seen the step's shapes.
//
// The first step of a new batch shape may need more than the arena holds: allocations past the
// capacity are served from overflow blocks and counted, and at the next reset the arena grows
// to the high-water mark. After one warm-up step per shape, overflow_allocations() stays put;
// tests assert exactly that.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "kernels/core/tensor.h"

namespace tfm {

class Arena {
 public:
  explicit Arena(Device device = Device::cpu, size_t initial_bytes = 0);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Starts a new step: everything handed out before is dead.
  void reset();
  // 256-byte aligned, uninitialised memory.
  void* alloc_bytes(size_t bytes);
  Tensor alloc(DType dtype, std::initializer_list<int64_t> dims) {
    Tensor t(nullptr, dtype, device_, dims);
    t.data = alloc_bytes(t.bytes());
    return t;
  }
  Tensor alloc_like(const Tensor& other) {
    Tensor t = other;
    t.device = device_;
    t.data = alloc_bytes(t.bytes());
    return t;
  }

  Device device() const { return device_; }
  size_t capacity() const { return capacity_; }
  size_t high_water() const { return high_water_; }
  size_t overflow_allocations() const { return overflow_count_; }

 private:
  void* raw_alloc(size_t bytes);
  void raw_free(void* p);

  Device device_;
  void* base_ = nullptr;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t high_water_ = 0;
  size_t overflow_count_ = 0;
  std::vector<void*> overflow_blocks_;
};

}  // namespace tfm
