// GPU tests of layer normalisation's CUDA twin (kernels/layernorm/layernorm_cuda.h) against the
// CPU twin in f32 on the same rounded inputs: widths that are and are not a multiple of the
// 16-byte pack, more rows than one parameter-gradient chunk, dx aliasing dy, fp32 master
// gamma/beta with 16-bit activations, and deterministic parameter gradients. Skipped without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/core/gpu_testing.h"
#include "kernels/layernorm/layernorm.h"
#include "tests/testing/testing.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/layernorm/layernorm_cuda.h"
#endif

namespace tfm {
namespace {

using namespace gpu_testing;  // GpuEnv, to_device, to_host, rounded, ...

#ifdef TFM_HAVE_CUDA

// One forward + backward on the GPU (x, dy of `dt`; gamma, beta and their gradients of
// `param_dt`) against the CPU twin in f32.
void check(DType dt, DType param_dt, int64_t rows, int64_t width, bool alias_dx) {
  SCOPED_TRACE(cat(dtype_name(dt), " params ", dtype_name(param_dt), " rows=", rows,
                   " width=", width, " dx aliases dy=", alias_dx));
  GpuEnv env;
  auto cpu = testing::cpu_context();
  const double eps = 1e-5;
  // An offset mean, so the two-pass variance matters.
  Buffer x = testing::random_buffer<float>({rows, width}, 1, 2.0, 4.0);
  Buffer gamma = testing::random_buffer<float>({width}, 2, 0.5, 1.5);
  Buffer beta = testing::random_buffer<float>({width}, 3);
  Buffer dy = testing::random_buffer<float>({rows, width}, 4);
  Buffer dgamma0 = testing::random_buffer<float>({width}, 5);
  Buffer dbeta0 = testing::random_buffer<float>({width}, 6);

  Buffer d_x = to_device(x, dt), d_g = to_device(gamma, param_dt), d_b = to_device(beta, param_dt);
  Buffer d_y(dt, {rows, width}, Device::cuda), d_mean(DType::f32, {rows}, Device::cuda),
      d_rstd(DType::f32, {rows}, Device::cuda);
  for (const Buffer* b : {&d_y, &d_mean, &d_rstd}) gpu_testing::poison_device(*b);
  cuda::layer_norm_forward(env.ctx, d_x, d_g, d_b, eps, d_y, d_mean, d_rstd);

  Buffer xr = rounded(x, dt), gr = rounded(gamma, param_dt), br = rounded(beta, param_dt);
  Buffer y(DType::f32, {rows, width}), mean(DType::f32, {rows}), rstd(DType::f32, {rows});
  layer_norm_forward(cpu, xr, gr, br, eps, y, mean, rstd);
  EXPECT_LE(scaled_error(to_host(d_y), y), gpu_testing::tolerance(dt)) << "y";
  EXPECT_LE(testing::max_rel_error(to_host(d_mean), mean), 1e-5) << "mean";
  EXPECT_LE(testing::max_rel_error(to_host(d_rstd), rstd), 1e-4) << "rstd";

  // Backward from the GPU's saved statistics (the CPU twin reads its own, equal within 1e-5).
  Buffer d_dy = to_device(dy, dt);
  Buffer d_dx_own(dt, {rows, width}, Device::cuda);
  const Tensor& d_dx = alias_dx ? d_dy.tensor() : d_dx_own.tensor();
  if (!alias_dx) gpu_testing::poison_device(d_dx);
  Buffer d_dgamma = to_device(dgamma0, param_dt), d_dbeta = to_device(dbeta0, param_dt);
  cuda::layer_norm_backward(env.ctx, d_dy, d_x, d_g, d_mean, d_rstd, d_dx, d_dgamma, d_dbeta);

  Buffer dyr = rounded(dy, dt), dx(DType::f32, {rows, width});
  Buffer dgr = rounded(dgamma0, param_dt), dbr = rounded(dbeta0, param_dt);
  layer_norm_backward(cpu, dyr, xr, gr, mean, rstd, dx, dgr, dbr);
  EXPECT_LE(scaled_error(to_host(d_dx), dx), gpu_testing::tolerance(dt)) << "dx";
  double ptol = param_dt == DType::f32 ? 1e-4 : gpu_testing::tolerance(param_dt);
  EXPECT_LE(scaled_error(to_host(d_dgamma), dgr), ptol) << "dgamma";
  EXPECT_LE(scaled_error(to_host(d_dbeta), dbr), ptol) << "dbeta";
}

TEST(LayerNormGpu, ForwardAndBackwardMatchCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (int64_t width : {1, 7, 64, 512, 1000, 1030})
      for (int64_t rows : {1, 3, 700})
        check(dt, dt, rows, width, false);
}

TEST(LayerNormGpu, Fp32MasterParametersWith16BitActivations) {
  TFM_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::bf16, DType::f16})
    for (int64_t width : {8, 512, 33})
      check(dt, DType::f32, 1100, width, false);
}

TEST(LayerNormGpu, DxMayAliasDy) {
  TFM_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t width : {64, 37}) check(dt, dt, 600, width, true);
}

TEST(LayerNormGpu, PublicOpsRunTheCudaTwinAndParameterGradientsAreDeterministic) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const int64_t rows = 1500, width = 96;
  Buffer x = testing::random_buffer<float>({rows, width}, 11);
  Buffer dy = testing::random_buffer<float>({rows, width}, 12);
  Buffer g = testing::random_buffer<float>({width}, 13), b = testing::random_buffer<float>({width}, 14);
  DType dt = DType::bf16;
  Buffer d_x = to_device(x, dt), d_dy = to_device(dy, dt), d_g = to_device(g, dt), d_b = to_device(b, dt);
  Buffer d_y(dt, {rows, width}, Device::cuda), d_dx(dt, {rows, width}, Device::cuda);
  Buffer d_mean(DType::f32, {rows}, Device::cuda), d_rstd(DType::f32, {rows}, Device::cuda);
  layer_norm_forward(env.ctx, d_x, d_g, d_b, 1e-5, d_y, d_mean, d_rstd);
  Buffer first, second;
  for (Buffer* out : {&first, &second}) {
    Buffer d_dg(dt, {width}, Device::cuda), d_db(dt, {width}, Device::cuda);
    copy_to_device(d_dg.tensor().data, std::vector<char>(d_dg.tensor().bytes(), 0).data(),
                   d_dg.tensor().bytes());
    copy_to_device(d_db.tensor().data, std::vector<char>(d_db.tensor().bytes(), 0).data(),
                   d_db.tensor().bytes());
    layer_norm_backward(env.ctx, d_dy, d_x, d_g, d_mean, d_rstd, d_dx, d_dg, d_db);
    *out = to_host(d_dg, DType::f32);
  }
  EXPECT_EQ(testing::max_abs_error(first, second), 0.0);
}

#else

TFM_GPU_SUITE_SKIPPED_WITHOUT_CUDA(LayerNormGpu);

#endif

}  // namespace
}  // namespace tfm
