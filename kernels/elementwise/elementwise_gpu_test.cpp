// GPU tests of the element-wise CUDA twins (kernels/elementwise/elementwise_cuda.h) through the
// public ops, against the CPU twins on the same rounded values: sizes that are not a multiple of
// the 16-byte pack, views that are not 16-byte aligned (the scalar path), aliasing, and the
// non-finite propagation of sum_squares. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/core/gpu_testing.h"
#include "kernels/elementwise/elementwise.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using gpu_testing::GpuEnv;
using gpu_testing::rounded;
using gpu_testing::to_device;
using gpu_testing::to_host;

// A device copy of host `h` stored as `dt`, `offset` elements into a larger buffer (offset 1
// breaks 16-byte alignment); `owner` keeps the memory.
Tensor device_view(const Tensor& h, DType dt, int64_t offset, Buffer& owner) {
  Buffer staged = gpu_testing::convert(h, dt);
  owner = Buffer(dt, {h.numel() + offset}, Device::cuda);
  Tensor t(static_cast<char*>(owner.tensor().data) + offset * dtype_size(dt), dt, Device::cuda,
           {h.numel()});
  copy_to_device(t.data, staged.tensor().data, t.bytes());
  return t;
}

const int64_t kSizes[] = {1, 7, 8, 9, 4099, 100003};

TEST(ElementwiseGpu, AddAccumulateCopyScaleAndZeroMatchCpu) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  auto cpu = testing::cpu_context();
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t n : kSizes)
      for (int64_t offset : {0, 1}) {
        SCOPED_TRACE(cat(dtype_name(dt), " n=", n, " offset=", offset));
        double tol = gpu_testing::tolerance(dt);
        // Relative errors are floored where the dtype's spacing stops being relative: f16
        // results below its smallest normal (6.1e-5) are subnormals with absolute spacing 6e-8.
        const double floor = dt == DType::f16 ? 1e-4 : 1e-6;
        Buffer a = testing::random_buffer<float>({n}, 1), b = testing::random_buffer<float>({n}, 2);
        Buffer ar = rounded(a, dt), br = rounded(b, dt);
        Buffer oa, ob, oo;
        Tensor da = device_view(a, dt, offset, oa), db = device_view(b, dt, offset, ob);
        Tensor dout = device_view(a, dt, offset, oo);

        // out = a + b into a poisoned output.
        gpu_testing::poison_device(dout);
        add(env.ctx, da, db, dout);
        Buffer want(DType::f32, {n});
        add(cpu, ar, br, want);
        EXPECT_LE(testing::max_rel_error(to_host(dout), want, floor), tol) << "add";

        // a += b (aliased output), then copy, scale, zero.
        accumulate(env.ctx, da, db);
        EXPECT_LE(testing::max_rel_error(to_host(da), want, floor), tol) << "accumulate";
        gpu_testing::poison_device(dout);
        copy(env.ctx, db, dout);
        EXPECT_EQ(testing::max_abs_error(to_host(dout), br), 0.0) << "copy";
        scale_inplace(env.ctx, dout, 0.37);
        Buffer scaled = rounded(b, dt);
        scale_inplace(cpu, scaled, 0.37);
        EXPECT_LE(testing::max_rel_error(to_host(dout), scaled, floor), tol) << "scale_inplace";
        gpu_testing::poison_device(dout);
        fill_zero(env.ctx, dout);
        Buffer zeros(DType::f32, {n});
        EXPECT_EQ(testing::max_abs_error(to_host(dout), zeros), 0.0) << "fill_zero";
      }
}

TEST(ElementwiseGpu, SumSquaresMatchesCpuInDoubleAndPropagatesNonFinite) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  auto cpu = testing::cpu_context();
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(16385), int64_t(1) << 21})
      for (int64_t offset : {0, 1}) {
        SCOPED_TRACE(cat(dtype_name(dt), " n=", n, " offset=", offset));
        Buffer x = testing::random_buffer<float>({n}, 3, -2.0, 2.0);
        Buffer o;
        Tensor dx = device_view(x, dt, offset, o);
        double got = sum_squares(env.ctx, dx);
        double want = sum_squares(cpu, rounded(x, dt));  // f32 values exactly as the GPU sees
        EXPECT_NEAR(got, want, 1e-12 * want);
        double again = sum_squares(env.ctx, dx);
        EXPECT_EQ(got, again) << "not deterministic";
      }
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Buffer x = testing::random_buffer<float>({50000}, 4);
    x.as<float>()[12345] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(std::isfinite(sum_squares(env.ctx, to_device(x, dt)))) << dtype_name(dt);
    x.as<float>()[12345] = 1.0f;
    x.as<float>()[49999] = std::nanf("");
    EXPECT_TRUE(std::isnan(sum_squares(env.ctx, to_device(x, dt)))) << dtype_name(dt);
  }
}

TEST(ElementwiseGpu, EmptyTensorsAreFine) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  Buffer e(DType::bf16, {0}, Device::cuda);
  add(env.ctx, e, e, e);
  scale_inplace(env.ctx, e, 2.0);
  fill_zero(env.ctx, e);
  copy(env.ctx, e, e);
  EXPECT_EQ(sum_squares(env.ctx, e), 0.0);
}

TEST(ElementwiseGpu, ConvertMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  auto cpu = testing::cpu_context();
  for (int64_t n : kSizes) {
    Buffer h = testing::random_buffer<float>({n}, uint64_t(n), -3.0, 3.0);
    for (DType from : {DType::f32, DType::bf16, DType::f16}) {
      for (DType to : {DType::f32, DType::bf16, DType::f16}) {
        Buffer src_host = gpu_testing::convert(h.tensor(), from);
        Buffer src(from, {n}, Device::cuda), dst(to, {n}, Device::cuda);
        copy_to_device(src.tensor().data, src_host.tensor().data, src.tensor().bytes());
        convert(env.ctx, src.tensor(), dst.tensor());
        Buffer want(to, {n});
        convert(cpu, src_host.tensor(), want.tensor());
        Buffer got(to, {n});
        copy_to_host(got.tensor().data, dst.tensor().data, got.tensor().bytes());
        EXPECT_EQ(std::memcmp(got.tensor().data, want.tensor().data, got.tensor().bytes()), 0)
            << dtype_name(from) << " to " << dtype_name(to) << ", n = " << n;
      }
    }
  }
}

}  // namespace
}  // namespace tfm
