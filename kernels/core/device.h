// The few device services the host code needs, with a CPU-only build answering "no GPU".
// Everything CUDA-specific stays in .cu files; host code calls these.
#pragma once
#include <cstddef>
#include <string>

namespace tfm {

bool cuda_compiled();              // built with the CUDA twins
int cuda_device_count();           // 0 without a driver or GPU (never throws)
std::string cuda_device_name(int device);
void cuda_set_device(int device);
void* device_malloc(size_t bytes);  // throws tfm::Error with the size on failure
void device_free(void* p);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void device_synchronize();
// Bytes in use on the current device (cudaMemGetInfo: total − free; everything, the CUDA context
// and other processes included); 0 without CUDA.
size_t cuda_memory_used();

}  // namespace tfm
