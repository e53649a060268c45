// Small helpers for the GPU tests (kernels/*/*_gpu_test.cpp), plain C++ (no CUDA headers):
// a device context with a scratch arena, upload / download with dtype conversion (bf16 and f16
// through the host converters of kernels/core/dtype.h), NaN poisoning of device outputs, and
// default tolerances by dtype. A GPU test compares a CUDA twin with its CPU twin run on the same
// (rounded) inputs in f32 or f64:
//
//   TEST(Op, Gpu) {
//     TFM_SKIP_WITHOUT_GPU();
//     gpu_testing::GpuEnv env;                                   // env.ctx runs on the GPU
//     Buffer x = testing::random_buffer<float>({7, 33}, 1);      // host f32
//     Buffer dx = gpu_testing::to_device(x, DType::bf16);        // device bf16
//     Buffer xr = gpu_testing::rounded(x, DType::bf16);          // host f32, what the GPU sees
//     ...poison_device(out); op(env.ctx, ...); op(cpu ctx, xr ...); compare to_host(out)...
//   }
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/core/arena.h"
#include "kernels/core/buffer.h"
#include "kernels/core/context.h"
#include "kernels/core/device.h"

namespace tfm::gpu_testing {

inline bool have_gpu() { return cuda_device_count() > 0; }

// The CPU CUDA emulator's build (kernels/core/cuda_emu/README.md): the "GPU" is the CPU, a
// thousand times slower, so tests whose size matters only for numerics at scale run shorter.
#if TFM_CUDA_EMULATION
constexpr bool kEmulatedGpu = true;
#else
constexpr bool kEmulatedGpu = false;
#endif

inline const char* no_gpu_reason() {
  return cuda_compiled() ? "no CUDA device visible (cuda_device_count() == 0); run on a GPU machine"
                         : "this build has no CUDA twins (configured without the CUDA toolkit)";
}

// First statement of every GPU test: skips it, with the reason, on a machine without a GPU.
#define TFM_SKIP_WITHOUT_GPU()                                          \
  if (!::tfm::gpu_testing::have_gpu()) {                                \
    GTEST_SKIP() << "no GPU: " << ::tfm::gpu_testing::no_gpu_reason(); \
  } else                                                                \
    (void)0

// The whole body of a GPU test file's `#else` branch when its tests need the CUDA twin's header
// (kernels/<op>/<op>_cuda.h, only under TFM_HAVE_CUDA): one test that skips with the reason, so a
// build without CUDA still lists the suite. Use as TFM_GPU_SUITE_SKIPPED_WITHOUT_CUDA(LinearGpu);
#define TFM_GPU_SUITE_SKIPPED_WITHOUT_CUDA(suite)                          \
  TEST(suite, SkippedWithoutCuda) {                                        \
    GTEST_SKIP() << "no GPU: " << ::tfm::gpu_testing::no_gpu_reason();    \
  }                                                                        \
  static_assert(true, "")

// A context on the GPU (default stream) with a device arena for the ops' scratch memory.
struct GpuEnv {
  Arena arena{Device::cuda};
  Context ctx;
  GpuEnv() {
    ctx.device = Device::cuda;
    ctx.workspace = &arena;
  }
};

// An owning buffer with `like`'s shape (rank 0..4), of the given dtype and device.
inline Buffer buffer_like(const Tensor& like, DType dtype, Device device) {
  const auto& s = like.shape;
  switch (like.rank) {
    case 0: return Buffer(dtype, {}, device);
    case 1: return Buffer(dtype, {s[0]}, device);
    case 2: return Buffer(dtype, {s[0], s[1]}, device);
    case 3: return Buffer(dtype, {s[0], s[1], s[2]}, device);
    default: return Buffer(dtype, {s[0], s[1], s[2], s[3]}, device);
  }
}

// Element i of a host tensor as double (f32, f64, bf16, f16, i32, i64, u16).
inline double host_load(const Tensor& t, int64_t i) {
  switch (t.dtype) {
    case DType::f32: return static_cast<const float*>(t.data)[i];
    case DType::f64: return static_cast<const double*>(t.data)[i];
    case DType::bf16: return bf16_to_float(static_cast<const bf16_t*>(t.data)[i]);
    case DType::f16: return f16_to_float(static_cast<const f16_t*>(t.data)[i]);
    case DType::i32: return static_cast<const int32_t*>(t.data)[i];
    case DType::i64: return double(static_cast<const int64_t*>(t.data)[i]);
    case DType::u16: return static_cast<const uint16_t*>(t.data)[i];
  }
  return 0;
}

// Stores v into element i of a host floating tensor, rounding to its dtype.
inline void host_store(const Tensor& t, int64_t i, double v) {
  switch (t.dtype) {
    case DType::f32: static_cast<float*>(t.data)[i] = float(v); return;
    case DType::f64: static_cast<double*>(t.data)[i] = v; return;
    case DType::bf16: static_cast<bf16_t*>(t.data)[i] = float_to_bf16(float(v)); return;
    case DType::f16: static_cast<f16_t*>(t.data)[i] = float_to_f16(float(v)); return;
    default: fail(cat("gpu_testing: cannot store into a ", dtype_name(t.dtype), " tensor"));
  }
}

// A host copy of a host tensor converted to `dtype` (integers are copied only to their own dtype).
inline Buffer convert(const Tensor& host, DType dtype) {
  TFM_CHECK(host.device == Device::cpu, "gpu_testing::convert: host tensors only");
  Buffer out = buffer_like(host, dtype, Device::cpu);
  if (dtype == host.dtype) {
    std::memcpy(out.tensor().data, host.data, host.bytes());
  } else {
    for (int64_t i = 0; i < host.numel(); ++i) host_store(out, i, host_load(host, i));
  }
  return out;
}

// Host values rounded through `through` (bf16, f16, f32) and returned as `want` (f32 or f64):
// exactly the values the GPU sees after to_device(host, through).
inline Buffer rounded(const Tensor& host, DType through, DType want = DType::f32) {
  Buffer narrow = convert(host, through);
  return convert(narrow, want);
}

// A device copy of a host tensor, stored as `dtype`.
inline Buffer to_device(const Tensor& host, DType dtype) {
  Buffer staged = convert(host, dtype);
  Buffer dev = buffer_like(host, dtype, Device::cuda);
  const size_t bytes = staged.tensor().bytes();  // in `dtype`, not the host tensor's dtype
  if (bytes) copy_to_device(dev.tensor().data, staged.tensor().data, bytes);
  return dev;
}
inline Buffer to_device(const Tensor& host) { return to_device(host, host.dtype); }

// A host copy of a device tensor, converted to `want` (f32 or f64 for floating tensors; pass
// the tensor's own dtype to get the raw values, e.g. i32).
inline Buffer to_host(const Tensor& dev, DType want = DType::f32) {
  Buffer raw = buffer_like(dev, dev.dtype, Device::cpu);
  if (dev.bytes()) copy_to_host(raw.tensor().data, dev.data, dev.bytes());
  return want == dev.dtype ? std::move(raw) : convert(raw, want);
}

// Fills a device tensor with 0xFF bytes: NaN in f32, f64, bf16 and f16, so an element an op
// forgot to write shows up in the comparison.
inline void poison_device(const Tensor& dev) {
  if (!dev.bytes()) return;
  std::vector<unsigned char> ff(dev.bytes(), 0xFF);
  copy_to_device(dev.data, ff.data(), ff.size());
}

// Default relative tolerance of a CUDA twin against its CPU twin, by storage dtype; tests may
// widen it where they explain why (long reductions, catastrophic cancellation).
inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32: return 1e-5;
    case DType::f16: return 5e-3;
    case DType::bf16: return 1e-2;
    default: return 1e-12;
  }
}

// max_i |a_i − e_i| / max_i |e_i| over host tensors (any floating dtype): the error relative to
// the tensor's scale, for outputs whose elements may sit near zero by cancellation (GEMMs, sums),
// where an element-wise relative error would measure the cancellation, not the kernel. NaN or
// inf in `actual` where `expected` is finite gives inf.
inline double scaled_error(const Tensor& actual, const Tensor& expected) {
  TFM_CHECK(actual.numel() == expected.numel(), "scaled_error: ", actual.shape_str(), " vs ",
            expected.shape_str());
  double scale = 0, worst = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    double e = host_load(expected, i);
    if (std::abs(e) > scale) scale = std::abs(e);
  }
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double err = std::abs(host_load(actual, i) - host_load(expected, i));
    if (!(err <= worst)) worst = std::isnan(err) ? HUGE_VAL : err;
  }
  return scale > 0 ? worst / scale : worst;
}

// Number of positions where exactly one of the two host tensors is zero (dropout masks).
inline int64_t zero_pattern_mismatches(const Tensor& a, const Tensor& b) {
  TFM_CHECK(a.numel() == b.numel(), "zero_pattern_mismatches: size mismatch");
  int64_t bad = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    bad += (host_load(a, i) == 0.0) != (host_load(b, i) == 0.0);
  return bad;
}

}  // namespace tfm::gpu_testing
