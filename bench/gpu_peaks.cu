// tfm_gpu_peaks: the measured peaks that GPU benchmarks are compared against (../shared/GPU.md):
//   - a large bf16 GEMM through our cuBLASLt path (tfm::cuda::gemm_ex: bf16 in, fp32 accumulate,
//     bf16 out), in TFLOP/s counting 2·M·N·K flops;
//   - a large device-to-device copy (cudaMemcpyAsync), in GB/s counting the bytes read plus the
//     bytes written (2 × size).
// Each figure is the median over many runs timed with CUDA events after a warm-up; inputs are
// non-zero pseudo-random values. Prints the device and the figures, then one machine-readable
// line per figure ("peak <name> <value>") for launch/gpu_verify.sh.
//   tfm_gpu_peaks [--gemm-size N] [--copy-mib M] [--repeats R]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/core/arena.h"
#include "kernels/core/cuda_common.cuh"
#include "kernels/core/device.h"
#include "kernels/gemm/gemm_cuda.h"

namespace {

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "tfm_gpu_peaks: %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

// Values in about [-1, 1) from a hash of the index: never zeros, never the same pattern twice.
__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2bfloat16_rn(float(h & 0xFFFF) / 32768.0f - 1.0f + 1.0f / 65536.0f);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Times `body` (enqueued on `stream`) `repeats` times after `warmup` runs; milliseconds each.
template <class F>
std::vector<double> time_runs(cudaStream_t stream, int warmup, int repeats, F&& body) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) body();
  check(cudaStreamSynchronize(stream), "warm-up");
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    body();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 8192;
  int64_t copy_mib = 1024;
  int repeats = 50;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "tfm_gpu_peaks: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--gemm-size") n = std::atoll(next());
    else if (a == "--copy-mib") copy_mib = std::atoll(next());
    else if (a == "--repeats") repeats = std::atoi(next());
    else {
      std::fprintf(stderr, "usage: tfm_gpu_peaks [--gemm-size N] [--copy-mib M] [--repeats R]\n");
      return 2;
    }
  }
  if (n < 1 || copy_mib < 1 || repeats < 1) {
    std::fprintf(stderr, "tfm_gpu_peaks: sizes and repeats must be positive\n");
    return 2;
  }
  if (tfm::cuda_device_count() == 0) {
    std::printf("tfm_gpu_peaks: no GPU visible; nothing measured\n");
    return 3;
  }
  try {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    std::printf("device: %s (sm_%d%d, %d SMs, %.1f GiB), driver %d, runtime %d\n", prop.name,
                prop.major, prop.minor, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / (1 << 30), driver, runtime);

    cudaStream_t stream;
    check(cudaStreamCreate(&stream), "cudaStreamCreate");
    tfm::Arena arena(tfm::Device::cuda);
    tfm::Context ctx;
    ctx.device = tfm::Device::cuda;
    ctx.stream = stream;
    ctx.workspace = &arena;

    // GEMM: C [n, n] = A [n, n] · Bᵀ, bf16, the layout of a linear layer's forward.
    size_t elems = size_t(n) * size_t(n);
    __nv_bfloat16 *a = nullptr, *b = nullptr, *c = nullptr;
    check(cudaMalloc(&a, elems * 2), "cudaMalloc A");
    check(cudaMalloc(&b, elems * 2), "cudaMalloc B");
    check(cudaMalloc(&c, elems * 2), "cudaMalloc C");
    tfm::cuda::launch_kernel(fill_bf16, 1024, 256, 0, stream, a, elems, 1u);
    tfm::cuda::launch_kernel(fill_bf16, 1024, 256, 0, stream, b, elems, 2u);
    tfm::cuda::launch_kernel(fill_bf16, 1024, 256, 0, stream, c, elems, 3u);
    check(cudaGetLastError(), "fill");
    tfm::GemmShape shape{false, true, n, n, n};
    auto gemm_ms = time_runs(stream, 5, repeats, [&] {
      tfm::cuda::gemm_ex(ctx, shape, tfm::DType::bf16, tfm::DType::bf16, 1.0, a, b, 0.0, c);
    });
    double flops = 2.0 * double(n) * double(n) * double(n);
    double gemm_med = median(gemm_ms);
    double gemm_best = *std::min_element(gemm_ms.begin(), gemm_ms.end());
    double tflops = flops / (gemm_med * 1e-3) / 1e12;
    std::printf("bf16 GEMM %lldx%lldx%lld (cuBLASLt, fp32 accumulate): median %.3f ms = %.1f "
                "TFLOP/s (best %.1f) over %d runs\n",
                (long long)n, (long long)n, (long long)n, gemm_med, tflops,
                flops / (gemm_best * 1e-3) / 1e12, repeats);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);

    // Copy: bytes read + bytes written.
    size_t bytes = size_t(copy_mib) << 20;
    void *src = nullptr, *dst = nullptr;
    check(cudaMalloc(&src, bytes), "cudaMalloc copy source");
    check(cudaMalloc(&dst, bytes), "cudaMalloc copy destination");
    tfm::cuda::launch_kernel(fill_bf16, 1024, 256, 0, stream, static_cast<__nv_bfloat16*>(src),
                             bytes / 2, 4u);
    check(cudaGetLastError(), "fill");
    auto copy_ms = time_runs(stream, 3, repeats, [&] {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    });
    double copy_med = median(copy_ms);
    double gbps = 2.0 * double(bytes) / (copy_med * 1e-3) / 1e9;
    std::printf("device-to-device copy of %lld MiB: median %.3f ms = %.0f GB/s (read + write) "
                "over %d runs\n",
                (long long)copy_mib, copy_med, gbps, repeats);
    cudaFree(src);
    cudaFree(dst);
    check(cudaStreamSynchronize(stream), "final synchronize");
    cudaStreamDestroy(stream);

    std::printf("peak device %s\n", prop.name);
    std::printf("peak gemm_bf16_tflops %.1f\n", tflops);
    std::printf("peak copy_gbps %.0f\n", gbps);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tfm_gpu_peaks: %s\n", e.what());
    return 1;
  }
  return 0;
}
