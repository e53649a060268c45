// Device services on CUDA. cuda_device_count() must not throw: the binary asks it at start-up on
// machines without a driver and then runs its CPU path.
#include <cuda_runtime.h>

#include "kernels/core/check.h"
#include "kernels/core/device.h"

namespace tfm {

namespace {
void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(cat(what, ": ", cudaGetErrorString(err)));
}
}  // namespace

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

void cuda_set_device(int device) { cuda_check(cudaSetDevice(device), "cudaSetDevice"); }

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
  if (err != cudaSuccess)
    fail(cat("cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(err)));
  return p;
}

void device_free(void* p) {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy_to_device");
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy_to_host");
}

void device_synchronize() { cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

size_t cuda_memory_used() {
  size_t free = 0, total = 0;
  cuda_check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return total - free;
}

}  // namespace tfm
