#include "kernels/core/arena.h"

#include <cstdlib>

#include "kernels/core/device.h"

namespace tfm {

namespace {
constexpr size_t kAlign = 256;
size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Arena::Arena(Device device, size_t initial_bytes) : device_(device) {
  if (initial_bytes) {
    capacity_ = round_up(initial_bytes);
    base_ = raw_alloc(capacity_);
  }
}

Arena::~Arena() {
  for (void* p : overflow_blocks_) raw_free(p);
  if (base_) raw_free(base_);
}

void* Arena::raw_alloc(size_t bytes) {
  if (device_ == Device::cuda) return device_malloc(bytes);
  void* p = std::aligned_alloc(kAlign, round_up(bytes ? bytes : 1));
  TFM_CHECK(p != nullptr, "arena: out of host memory allocating ", bytes, " bytes");
  return p;
}

void Arena::raw_free(void* p) {
  if (device_ == Device::cuda) device_free(p);
  else std::free(p);
}

void Arena::reset() {
  for (void* p : overflow_blocks_) raw_free(p);
  overflow_blocks_.clear();
  if (high_water_ > capacity_) {
    if (base_) raw_free(base_);
    capacity_ = round_up(high_water_);
    base_ = raw_alloc(capacity_);
  }
  used_ = 0;
}

void* Arena::alloc_bytes(size_t bytes) {
  size_t size = round_up(bytes ? bytes : 1);
  high_water_ = std::max(high_water_, used_ + size);
  if (used_ + size <= capacity_) {
    void* p = static_cast<char*>(base_) + used_;
    used_ += size;
    return p;
  }
  // Past capacity: serve from a separate block; the next reset() grows the arena to fit.
  used_ += size;
  ++overflow_count_;
  overflow_blocks_.push_back(raw_alloc(size));
  return overflow_blocks_.back();
}

}  // namespace tfm
