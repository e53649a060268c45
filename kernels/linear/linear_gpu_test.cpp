// GPU tests of the linear layer's CUDA twin (kernels/linear/linear_cuda.h) against the CPU twin
// run in f32 on the same rounded inputs: forward with and without bias and ReLU, backward with
// the ReLU mask, accumulate_dx, both bias-gradient paths, fp32 master gradients from bf16/f16
// activations, odd shapes and more rows than one column-sum chunk. Skipped without a GPU.
#include <gtest/gtest.h>

#include "kernels/core/gpu_testing.h"
#include "kernels/linear/linear.h"
#include "tests/testing/testing.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/linear/linear_cuda.h"
#endif

namespace tfm {
namespace {

using namespace gpu_testing;  // GpuEnv, to_device, to_host, rounded, ...

#ifdef TFM_HAVE_CUDA

struct Shape {
  int64_t b, t, k, n;  // x [b, t, k], w [n, k]
};
const Shape kShapes[] = {{1, 1, 1, 1}, {3, 5, 37, 29}, {2, 300, 64, 48}, {1, 7, 130, 257}};

// Forward: the public op on the GPU (x, w, b, y of one dtype) against the CPU twin.
TEST(LinearGpu, ForwardMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (const Shape& s : kShapes)
      for (Activation act : {Activation::none, Activation::relu})
        for (bool bias : {false, true}) {
          SCOPED_TRACE(cat(dtype_name(dt), " x [", s.b, ", ", s.t, ", ", s.k, "] n=", s.n,
                           " relu=", act == Activation::relu, " bias=", bias));
          Buffer x = testing::random_buffer<float>({s.b, s.t, s.k}, 1);
          Buffer w = testing::random_buffer<float>({s.n, s.k}, 2);
          Buffer b = testing::random_buffer<float>({s.n}, 3);
          Buffer dx = to_device(x, dt), dw = to_device(w, dt), dbias = to_device(b, dt);
          Buffer dy(dt, {s.b, s.t, s.n}, Device::cuda);
          gpu_testing::poison_device(dy);
          linear_forward(env.ctx, dx, dw, bias ? dbias.tensor() : Tensor(), act, dy);
          Buffer got = to_host(dy);

          Buffer xr = rounded(x, dt), wr = rounded(w, dt), br = rounded(b, dt);
          Buffer want(DType::f32, {s.b, s.t, s.n});
          linear_forward(testing::cpu_context(), xr, wr, bias ? br.tensor() : Tensor(), act, want);
          EXPECT_LE(scaled_error(got, want), gpu_testing::tolerance(dt));
        }
}

// Backward against the CPU twin; dx, dw, db start from random values (dw, db accumulate, and dx
// too with accumulate_dx). With ReLU both twins mask dy with the GPU's forward output.
void check_backward(DType dt, DType grad_dt, const Shape& s, Activation act, bool accumulate_dx,
                    cuda::BiasGradPath path, bool with_dw) {
  SCOPED_TRACE(cat(dtype_name(dt), " grads ", dtype_name(grad_dt), " x [", s.b, ", ", s.t, ", ",
                   s.k, "] n=", s.n, " relu=", act == Activation::relu, " accumulate_dx=",
                   accumulate_dx, " path=", int(path), " dw=", with_dw));
  GpuEnv env;
  Buffer x = testing::random_buffer<float>({s.b, s.t, s.k}, 21);
  Buffer w = testing::random_buffer<float>({s.n, s.k}, 22);
  Buffer b = testing::random_buffer<float>({s.n}, 23);
  Buffer dy = testing::random_buffer<float>({s.b, s.t, s.n}, 24);
  Buffer dx0 = testing::random_buffer<float>({s.b, s.t, s.k}, 25);
  Buffer dw0 = testing::random_buffer<float>({s.n, s.k}, 26);
  Buffer db0 = testing::random_buffer<float>({s.n}, 27);

  Buffer d_x = to_device(x, dt), d_w = to_device(w, dt), d_b = to_device(b, dt);
  Buffer d_y(dt, {s.b, s.t, s.n}, Device::cuda);
  cuda::linear_forward(env.ctx, d_x, d_w, d_b, act, d_y);
  Buffer y_host = to_host(d_y);  // exact in f32: the mask both twins use

  Buffer d_dy = to_device(dy, dt), d_dx = to_device(dx0, dt);
  Buffer d_dw = to_device(dw0, grad_dt), d_db = to_device(db0, grad_dt);
  if (!accumulate_dx) gpu_testing::poison_device(d_dx);
  cuda::set_linear_bias_grad_path(path);
  cuda::linear_backward(env.ctx, d_x, d_w, d_y, act, d_dy, d_dx, with_dw ? d_dw.tensor() : Tensor(),
                        d_db, accumulate_dx);
  cuda::set_linear_bias_grad_path(cuda::BiasGradPath::epilogue_if_available);

  Buffer xr = rounded(x, dt), wr = rounded(w, dt), dyr = rounded(dy, dt);
  Buffer dxr = rounded(dx0, dt), dwr = rounded(dw0, grad_dt), dbr = rounded(db0, grad_dt);
  linear_backward(testing::cpu_context(), xr, wr, y_host, act, dyr, dxr,
                  with_dw ? dwr.tensor() : Tensor(), dbr, accumulate_dx);

  EXPECT_LE(scaled_error(to_host(d_dy), dyr), gpu_testing::tolerance(dt)) << "dy after the mask";
  EXPECT_LE(scaled_error(to_host(d_dx), dxr), gpu_testing::tolerance(dt)) << "dx";
  // Parameter gradients: products of 16-bit inputs are exact in fp32 and sums run in fp32, so
  // f32 gradients differ from the CPU twin only by summation order.
  double grad_tol = grad_dt == DType::f32 ? 1e-5 : gpu_testing::tolerance(grad_dt);
  if (with_dw) {
    EXPECT_LE(scaled_error(to_host(d_dw), dwr), grad_tol) << "dw";
  }
  EXPECT_LE(scaled_error(to_host(d_db), dbr), grad_tol) << "db";
}

TEST(LinearGpu, BackwardMatchesCpuTwin) {
  TFM_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (const Shape& s : kShapes)
      for (Activation act : {Activation::none, Activation::relu})
        for (bool acc : {false, true})
          for (auto path : {cuda::BiasGradPath::epilogue_if_available,
                            cuda::BiasGradPath::column_sum_kernel})
            check_backward(dt, dt, s, act, acc, path, true);
}

TEST(LinearGpu, BackwardIntoFp32MasterGradients) {
  TFM_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::bf16, DType::f16})
    for (const Shape& s : kShapes)
      for (auto path : {cuda::BiasGradPath::epilogue_if_available,
                        cuda::BiasGradPath::column_sum_kernel})
        for (bool with_dw : {true, false})
          check_backward(dt, DType::f32, s, Activation::relu, false, path, with_dw);
}

TEST(LinearGpu, ForwardWithFp32BiasOnBf16Activations) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const Shape s{2, 9, 40, 24};
  Buffer x = testing::random_buffer<float>({s.b, s.t, s.k}, 31);
  Buffer w = testing::random_buffer<float>({s.n, s.k}, 32);
  Buffer b = testing::random_buffer<float>({s.n}, 33);
  for (DType dt : {DType::bf16, DType::f16}) {
    Buffer dx = to_device(x, dt), dw = to_device(w, dt), db = to_device(b, DType::f32);
    Buffer dy(dt, {s.b, s.t, s.n}, Device::cuda);
    gpu_testing::poison_device(dy);
    cuda::linear_forward(env.ctx, dx, dw, db, Activation::relu, dy);
    Buffer xr = rounded(x, dt), wr = rounded(w, dt);
    Buffer want(DType::f32, {s.b, s.t, s.n});
    linear_forward(testing::cpu_context(), xr, wr, b, Activation::relu, want);
    EXPECT_LE(scaled_error(to_host(dy), want), gpu_testing::tolerance(dt)) << dtype_name(dt);
  }
}

#else

TFM_GPU_SUITE_SKIPPED_WITHOUT_CUDA(LinearGpu);

#endif

}  // namespace
}  // namespace tfm
