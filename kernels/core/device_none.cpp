// Device services for a build without CUDA: no GPU, and any attempt to use one says so.
#include "kernels/core/check.h"
#include "kernels/core/device.h"

namespace tfm {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail(cat(what, ": this tfm was built without CUDA (rebuild with the CUDA toolkit present)"));
}
}  // namespace

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cuda_device_name(int) { no_cuda("cuda_device_name"); }
void cuda_set_device(int) { no_cuda("cuda_set_device"); }
void* device_malloc(size_t) { no_cuda("device_malloc"); }
void device_free(void*) {}
void copy_to_device(void*, const void*, size_t) { no_cuda("copy_to_device"); }
void copy_to_host(void*, const void*, size_t) { no_cuda("copy_to_host"); }
void device_synchronize() {}
size_t cuda_memory_used() { return 0; }

}  // namespace tfm
