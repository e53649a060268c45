// Out-of-line pieces of kernels/core/cuda_common.cuh.
#include <atomic>

#include "kernels/core/cuda_common.cuh"

namespace tfm::cuda {

int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  bool cached = device >= 0 && device < kMaxDevices;
  int n = cached ? cache[device].load(std::memory_order_relaxed) : 0;
  if (n == 0) {
    check_cuda(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device),
               "cudaDeviceGetAttribute(multiProcessorCount)");
    if (n < 1) n = 1;
    if (cached) cache[device].store(n, std::memory_order_relaxed);
  }
  return n;
}

}  // namespace tfm::cuda
