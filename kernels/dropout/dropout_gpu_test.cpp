// GPU tests of dropout's CUDA twin (kernels/dropout/dropout_cuda.h): the mask must be exactly the
// CPU twin's (same zero pattern, element for element) for offsets that do not start a Philox
// counter and sizes that do not end one; kept values match; backward regenerates the same mask;
// output may alias input; p = 0 is the identity; column blocks (tensor parallelism) draw the CPU
// twin's and the whole tensor's mask. Skipped without a GPU.
#include <gtest/gtest.h>

#include "kernels/core/gpu_testing.h"
#include "kernels/dropout/dropout.h"
#include "tests/testing/testing.h"

namespace tfm {
namespace {

using namespace gpu_testing;  // GpuEnv, to_device, to_host, rounded, ...

TEST(DropoutGpu, MaskAndValuesMatchCpuTwinExactly) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  auto cpu = testing::cpu_context();
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t n : {1, 3, 4, 5, 1001, 65537})
      for (uint64_t offset : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(3),
                              uint64_t(1234567), (uint64_t(1) << 33) + 5})
        for (float p : {0.1f, 0.5f}) {
          SCOPED_TRACE(cat(dtype_name(dt), " n=", n, " offset=", offset, " p=", p));
          DropoutSpec spec{p, 0x5eed0000u + uint64_t(n), offset};
          // Values away from zero, so a zero in the output can only come from the mask.
          Buffer x = testing::random_buffer<float>({n}, 7, 0.5, 2.0);
          Buffer dx = to_device(x, dt);
          Buffer dy(dt, {n}, Device::cuda);
          gpu_testing::poison_device(dy);
          dropout_forward(env.ctx, dx, dy, spec);
          Buffer got = to_host(dy);

          Buffer xr = rounded(x, dt);
          Buffer want(DType::f32, {n});
          dropout_forward(cpu, xr, want, spec);
          ASSERT_EQ(gpu_testing::zero_pattern_mismatches(got, want), 0) << "mask differs";
          // f32: the same single multiplication as the CPU twin, so equal; 16-bit: one rounding.
          EXPECT_LE(testing::max_rel_error(got, want, 1e-6),
                    dt == DType::f32 ? 0.0 : gpu_testing::tolerance(dt));

          // Backward in place (dx aliases dy) regenerates the same mask.
          Buffer g = testing::random_buffer<float>({n}, 8, 0.5, 2.0);
          Buffer dg = to_device(g, dt);
          dropout_backward(env.ctx, dg, dg, spec);
          Buffer gwant = rounded(g, dt);
          dropout_backward(cpu, gwant, gwant, spec);
          Buffer ggot = to_host(dg);
          ASSERT_EQ(gpu_testing::zero_pattern_mismatches(ggot, gwant), 0) << "backward mask";
          ASSERT_EQ(gpu_testing::zero_pattern_mismatches(ggot, got), 0) << "forward vs backward";
        }
}

// Column blocks (tensor parallelism, DropoutSpec::block > 0): the CUDA twin's per-row path draws
// the CPU twin's mask, and that is the mask of those columns of the whole tensor.
TEST(DropoutGpu, ColumnBlockMatchesCpuTwinAndTheWholeTensor) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  auto cpu = testing::cpu_context();
  struct Block { int64_t R, C, c0, Cl; };
  for (DType dt : {DType::f32, DType::bf16})
    for (Block b : {Block{7, 13, 3, 5}, Block{33, 37, 0, 1}, Block{5, 4096, 1024, 1024},
                    Block{3, 7001, 2001, 3000}, Block{64, 9, 8, 1}})
      for (uint64_t offset : {uint64_t(0), uint64_t(3), (uint64_t(1) << 33) + 5}) {
        SCOPED_TRACE(cat(dtype_name(dt), " R=", b.R, " C=", b.C, " c0=", b.c0, " Cl=", b.Cl,
                         " offset=", offset));
        DropoutSpec whole{0.5f, 0xb10c0000u + uint64_t(b.C), offset};
        DropoutSpec spec = dropout_column_block(whole, b.Cl, b.C, b.c0);
        const int64_t n = b.R * b.Cl;
        Buffer x = testing::random_buffer<float>({b.R, b.Cl}, 17, 0.5, 2.0);
        Buffer dx = to_device(x, dt);
        Buffer dy(dt, {b.R, b.Cl}, Device::cuda);
        gpu_testing::poison_device(dy);
        dropout_forward(env.ctx, dx, dy, spec);
        Buffer got = to_host(dy);
        Buffer xr = rounded(x, dt);
        Buffer want(DType::f32, {b.R, b.Cl});
        dropout_forward(cpu, xr, want, spec);
        ASSERT_EQ(gpu_testing::zero_pattern_mismatches(got, want), 0) << "mask differs";
        EXPECT_LE(testing::max_rel_error(got, want, 1e-6),
                  dt == DType::f32 ? 0.0 : gpu_testing::tolerance(dt));
        // Backward in place regenerates it; and it is the whole tensor's mask on those columns.
        dropout_backward(env.ctx, dx, dx, spec);
        Buffer back = to_host(dx);
        ASSERT_EQ(gpu_testing::zero_pattern_mismatches(back, got), 0) << "forward vs backward";
        for (int64_t i = 0; i < n; ++i) {
          const int64_t r = i / b.Cl, c = i % b.Cl;
          ASSERT_EQ(got.as<float>()[i] == 0.0f,
                    !dropout_keep(whole, uint64_t(r * b.C + b.c0 + c)))
              << "element [" << r << ", " << c << "]";
        }
      }
}

TEST(DropoutGpu, ZeroRateIsTheIdentityAndBadRatesThrow) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  Buffer x = testing::random_buffer<float>({1000}, 9);
  for (DType dt : {DType::f32, DType::bf16}) {
    Buffer dx = to_device(x, dt);
    Buffer dy(dt, {1000}, Device::cuda);
    gpu_testing::poison_device(dy);
    dropout_forward(env.ctx, dx, dy, DropoutSpec{0.0f, 1, 0});
    EXPECT_EQ(testing::max_abs_error(to_host(dy), rounded(x, dt)), 0.0);
    EXPECT_THROW(dropout_forward(env.ctx, dx, dy, DropoutSpec{1.0f, 1, 0}), Error);
  }
}

TEST(DropoutGpu, KeepRateOnALargeTensor) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const int64_t n = int64_t(1) << 22;
  Buffer ones(DType::f32, {n});
  for (int64_t i = 0; i < n; ++i) ones.as<float>()[i] = 1.0f;
  Buffer d = to_device(ones, DType::bf16);
  dropout_forward(env.ctx, d, d, DropoutSpec{0.1f, 42, 77});
  Buffer got = to_host(d);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) kept += got.as<float>()[i] != 0.0f;
  EXPECT_NEAR(double(kept) / double(n), 0.9, 0.002);
}

}  // namespace
}  // namespace tfm
