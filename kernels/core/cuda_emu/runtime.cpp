// CUDA emulation: the runtime API of include/cuda_runtime.h on the CPU. One device; device
// memory is host memory (so a host pointer passed where a device pointer belongs goes unnoticed
// here — the GPU suite on a real device is still the judge of that); streams and events are
// tokens and all work is synchronous.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>

#include "cuda_runtime.h"
#include "kernels/core/cuda_emu/engine_internal.h"

namespace tfm_emu {
namespace {
thread_local cudaError_t t_last_error = cudaSuccess;
int t_device = 0;
constexpr size_t kDeviceBytes = size_t(80) << 30;  // what the emulated device claims to have

std::mutex g_mem_mutex;
size_t g_allocated = 0;
std::unordered_map<void*, size_t>& allocations() {
  static std::unordered_map<void*, size_t> m;
  return m;
}

cudaError_t take_error() {
  cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

// What a stream or event handle points at. Work is synchronous, so an event "completes" when
// it is recorded: it keeps the host time of that moment.
struct Token {
  std::chrono::steady_clock::time_point recorded{};
};
}  // namespace

void record_launch_error(cudaError_t err, const char* message) {
  std::fprintf(stderr, "tfm CUDA emulator: %s\n", message);
  if (t_last_error == cudaSuccess) t_last_error = err;
}
}  // namespace tfm_emu

using namespace tfm_emu;

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = t_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "tfm CUDA emulator (CPU)");
  prop->totalGlobalMem = kDeviceBytes;
  prop->sharedMemPerBlock = 48 << 10;
  prop->sharedMemPerBlockOptin = 227 << 10;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->multiProcessorCount = 2;
  prop->major = 9;
  prop->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 << 10; return cudaSuccess;
    case cudaDevAttrWarpSize: *value = 32; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 2; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 << 10; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

// 0: no driver and no runtime; the emulator is neither.
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 0;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return take_error(); }
cudaError_t cudaGetLastError() { return take_error(); }
cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
  }
  return "cudaError (unknown)";
}
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (the CUDA emulator printed the cause above)";
    default: return cudaGetErrorName(err);
  }
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  // 256-byte aligned like cudaMalloc; poisoned (0xff = NaN in every float type) so that a
  // kernel reading memory nobody wrote shows it.
  const size_t n = bytes ? (bytes + 255) / 256 * 256 : 256;
  void* p = std::aligned_alloc(256, n);
  if (!p) return cudaErrorMemoryAllocation;
  std::memset(p, 0xff, n);
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  allocations()[p] = n;
  g_allocated += n;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = allocations().find(ptr);
  if (it == allocations().end()) return cudaErrorInvalidValue;
  g_allocated -= it->second;
  allocations().erase(it);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  *ptr = std::malloc(bytes ? bytes : 1);
  return *ptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  *total = kDeviceBytes;
  *free = kDeviceBytes > g_allocated ? kDeviceBytes - g_allocated : 0;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes && (!dst || !src)) return cudaErrorInvalidValue;
  if (bytes) std::memmove(dst, src, bytes);
  return take_error();
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  if (bytes && (!dst || !src)) return cudaErrorInvalidValue;
  if (bytes) std::memmove(dst, src, bytes);
  (void)kind;
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes && !dst) return cudaErrorInvalidValue;
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(dst, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = reinterpret_cast<cudaStream_t>(new Token);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  return cudaStreamCreate(stream);
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned, int) {
  return cudaStreamCreate(stream);
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
  if (least) *least = 0;
  if (greatest) *greatest = -5;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<Token*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return take_error(); }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new Token);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  return cudaEventCreate(event);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<Token*>(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (!event) return cudaErrorInvalidValue;
  reinterpret_cast<Token*>(event)->recorded = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return take_error(); }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
// Host time between the two records: the emulator's (slow) time, never a GPU's.
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end) return cudaErrorInvalidValue;
  const auto d = reinterpret_cast<Token*>(end)->recorded - reinterpret_cast<Token*>(start)->recorded;
  *ms = std::chrono::duration<float, std::milli>(d).count();
  return cudaSuccess;
}
