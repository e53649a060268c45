// GPU tests of the cuBLASLt GEMM (kernels/gemm/gemm_cuda.h) against a double-precision reference
// on the same (rounded) inputs: every transpose combination, odd sizes, padded leading
// dimensions, operands that are not 16-byte aligned, mixed bf16/f16 → f32, each epilogue fused
// and by its stand-in kernels, k = 0, and the deterministic column sums. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/core/gpu_testing.h"
#include "kernels/gemm/gemm.h"
#include "tests/testing/testing.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/gemm/gemm_cuda.h"
#endif

namespace tfm {
namespace {

using gpu_testing::GpuEnv;

#ifdef TFM_HAVE_CUDA

struct Case {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  int64_t pad = 0;     // extra columns in every leading dimension
  int64_t offset = 0;  // elements between each buffer's start and its matrix (misalignment)
};

std::string describe(const Case& c, DType ab, DType cd, cuda::Epilogue e, bool fused) {
  return cat("m=", c.m, " n=", c.n, " k=", c.k, " ta=", c.ta, " tb=", c.tb, " pad=", c.pad,
             " offset=", c.offset, " A/B ", dtype_name(ab), " C ", dtype_name(cd), " epilogue ",
             cuda::epilogue_name(e), fused ? " (fused if available)" : " (stand-in kernels)");
}

// Runs one GEMM on the GPU and checks C (and the bias gradient) against a double reference.
void check_case(const Case& c, DType ab, DType cd, double alpha, double beta,
                cuda::Epilogue epi = cuda::Epilogue::none, DType bias_dtype = DType::f32,
                bool allow_fused = true) {
  SCOPED_TRACE(describe(c, ab, cd, epi, allow_fused));
  GpuEnv env;
  int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  // Host values, rounded to the device dtypes so the reference sees what the GPU sees.
  Buffer a = testing::random_buffer<float>({c.offset + a_rows * lda}, 11);
  Buffer b = testing::random_buffer<float>({c.offset + b_rows * ldb}, 12);
  Buffer c0 = testing::random_buffer<float>({c.offset + c.m * ldc}, 13);
  Buffer bias = testing::random_buffer<float>({c.n}, 14);
  Buffer ar = gpu_testing::rounded(a, ab, DType::f64), br = gpu_testing::rounded(b, ab, DType::f64);
  Buffer cr = gpu_testing::rounded(c0, cd, DType::f64);
  Buffer biasr = gpu_testing::rounded(bias, bias_dtype, DType::f64);
  Buffer da = gpu_testing::to_device(a, ab), db = gpu_testing::to_device(b, ab);
  Buffer dc = gpu_testing::to_device(c0, cd), dbias = gpu_testing::to_device(bias, bias_dtype);
  int64_t grad_len = epi == cuda::Epilogue::bgrad_a ? c.m : c.n;
  Buffer dgrad(cd, {grad_len}, Device::cuda);
  gpu_testing::poison_device(dgrad);
  if (beta == 0) gpu_testing::poison_device(dc);  // beta = 0 must not read C

  size_t esz = dtype_size(ab), csz = dtype_size(cd);
  const char* pa = static_cast<const char*>(da.tensor().data) + c.offset * esz;
  const char* pb = static_cast<const char*>(db.tensor().data) + c.offset * esz;
  char* pc = static_cast<char*>(dc.tensor().data) + c.offset * csz;
  cuda::GemmEpilogue ep;
  ep.kind = epi;
  ep.bias = dbias.tensor().data;
  ep.bias_dtype = bias_dtype;
  ep.bias_grad = dgrad.tensor().data;
  ep.allow_fused = allow_fused;
  GemmShape s{c.ta, c.tb, c.m, c.n, c.k, lda, ldb, ldc};
  cuda::gemm_ex(env.ctx, s, ab, cd, alpha, pa, pb, beta, pc, ep);
  device_synchronize();

  Buffer got = gpu_testing::to_host(dc, DType::f64);
  Buffer grad = gpu_testing::to_host(dgrad, DType::f64);
  const double *A = ar.as<double>() + c.offset, *B = br.as<double>() + c.offset;
  const double* C0 = cr.as<double>() + c.offset;
  const double* G = got.as<double>() + c.offset;
  Buffer want(DType::f64, {c.m, c.n}), have(DType::f64, {c.m, c.n});
  bool relu = epi == cuda::Epilogue::relu || epi == cuda::Epilogue::relu_bias;
  bool add_bias = epi == cuda::Epilogue::bias || epi == cuda::Epilogue::relu_bias;
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      double sum = 0;
      for (int64_t kk = 0; kk < c.k; ++kk)
        sum += (c.ta ? A[kk * lda + i] : A[i * lda + kk]) * (c.tb ? B[j * ldb + kk] : B[kk * ldb + j]);
      double v = alpha * sum + (beta == 0 ? 0.0 : beta * C0[i * ldc + j]);
      if (add_bias) v += biasr.as<double>()[j];
      if (relu && v < 0) v = 0;
      want.as<double>()[i * c.n + j] = v;
      have.as<double>()[i * c.n + j] = G[i * ldc + j];
    }
  EXPECT_LE(gpu_testing::scaled_error(have, want), gpu_testing::tolerance(cd));
  // The padding columns of C are not C's: they must be untouched (compared bit for bit).
  if (c.pad && beta != 0) {
    Buffer before = gpu_testing::rounded(c0, cd, DType::f64);
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = c.n; j < ldc; ++j)
        ASSERT_EQ(G[i * ldc + j], before.as<double>()[c.offset + i * ldc + j]) << i << "," << j;
  }
  if (epi == cuda::Epilogue::bgrad_a || epi == cuda::Epilogue::bgrad_b) {
    Buffer gwant(DType::f64, {grad_len});
    for (int64_t i = 0; i < grad_len; ++i) {
      double sum = 0;
      for (int64_t kk = 0; kk < c.k; ++kk)
        sum += epi == cuda::Epilogue::bgrad_a ? (c.ta ? A[kk * lda + i] : A[i * lda + kk])
                                              : (c.tb ? B[i * ldb + kk] : B[kk * ldb + i]);
      gwant.as<double>()[i] = sum;
    }
    EXPECT_LE(gpu_testing::scaled_error(grad, gwant), gpu_testing::tolerance(cd)) << "bias grad";
  }
}

struct Types {
  DType ab, cd;
};
const Types kTypes[] = {{DType::f32, DType::f32},
                        {DType::bf16, DType::bf16},
                        {DType::f16, DType::f16},
                        {DType::bf16, DType::f32},
                        {DType::f16, DType::f32}};

TEST(GemmGpu, MatchesReferenceForEveryTransposeSizeAndDtype) {
  TFM_SKIP_WITHOUT_GPU();
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {128, 96, 64}, {257, 31, 1000}};
  for (const Types& t : kTypes)
    for (int tr = 0; tr < 4; ++tr)
      for (const auto& sz : sizes)
        for (int64_t pad : {0, 3}) {
          Case c{bool(tr & 1), bool(tr & 2), sz[0], sz[1], sz[2], pad, 0};
          check_case(c, t.ab, t.cd, 0.75, 0.5);
          check_case(c, t.ab, t.cd, 1.0, 0.0);
        }
}

TEST(GemmGpu, HandlesOperandsThatAreNotSixteenByteAligned) {
  TFM_SKIP_WITHOUT_GPU();
  for (const Types& t : kTypes)
    for (int tr = 0; tr < 4; ++tr)
      for (int64_t offset : {1, 3}) {
        check_case(Case{bool(tr & 1), bool(tr & 2), 19, 23, 41, 1, offset}, t.ab, t.cd, 1.0, 1.0);
        check_case(Case{bool(tr & 1), bool(tr & 2), 64, 64, 64, 0, offset}, t.ab, t.cd, 1.0, 0.0);
      }
}

TEST(GemmGpu, EpiloguesFusedAndByStandInKernelsMatchReference) {
  TFM_SKIP_WITHOUT_GPU();
  const cuda::Epilogue kinds[] = {cuda::Epilogue::bias, cuda::Epilogue::relu_bias,
                                  cuda::Epilogue::relu, cuda::Epilogue::bgrad_a,
                                  cuda::Epilogue::bgrad_b};
  const int64_t sizes[][3] = {{7, 13, 5}, {64, 128, 256}, {300, 50, 70}, {1030, 24, 600}};
  for (const Types& t : kTypes)
    for (cuda::Epilogue e : kinds)
      for (bool fused : {true, false})
        for (int tr = 0; tr < 4; ++tr)
          for (const auto& sz : sizes) {
            // Padded leading dimensions for one transpose combination (a past cuBLASLt bias
            // epilogue bug skipped columns when ldc != rows).
            Case c{bool(tr & 1), bool(tr & 2), sz[0], sz[1], sz[2], tr == 1 ? 5 : 0, 0};
            check_case(c, t.ab, t.cd, 1.0, tr == 3 ? 1.0 : 0.0, e, t.cd, fused);
            if (e == cuda::Epilogue::bias || e == cuda::Epilogue::relu_bias)
              check_case(c, t.ab, t.cd, 1.0, 0.0, e, DType::f32, fused);  // f32 bias
          }
}

TEST(GemmGpu, EmptyInnerDimensionGivesBetaTimesC) {
  TFM_SKIP_WITHOUT_GPU();
  for (const Types& t : kTypes) {
    check_case(Case{false, true, 5, 7, 0}, t.ab, t.cd, 1.0, 0.0);  // poisoned C → exact zeros
    check_case(Case{false, true, 5, 7, 0}, t.ab, t.cd, 1.0, 0.5);
    check_case(Case{false, true, 5, 7, 0}, t.ab, t.cd, 1.0, 0.0, cuda::Epilogue::relu_bias, t.cd);
    check_case(Case{true, false, 5, 7, 0}, t.ab, t.cd, 1.0, 1.0, cuda::Epilogue::bgrad_a);
  }
}

// An empty C (m or n = 0) over a non-empty op(A) or op(B): the bias gradient of that operand is
// still its sum over k, not zeros (found with the CPU CUDA emulator's cuBLASLt stand-in).
TEST(GemmGpu, EmptyOutputStillGivesTheOtherOperandsBiasGradient) {
  TFM_SKIP_WITHOUT_GPU();
  for (const Types& t : kTypes)
    for (bool trans : {false, true}) {
      check_case(Case{trans, !trans, 5, 0, 7}, t.ab, t.cd, 1.0, 0.0, cuda::Epilogue::bgrad_a);
      check_case(Case{trans, !trans, 0, 6, 7}, t.ab, t.cd, 1.0, 0.0, cuda::Epilogue::bgrad_b);
    }
}

TEST(GemmGpu, PublicDispatcherRunsTheCudaTwinAndTheCacheIsOnlyACache) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  const int64_t m = 45, n = 70, k = 33;
  Buffer a = testing::random_buffer<float>({m, k}, 1), b = testing::random_buffer<float>({n, k}, 2);
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    Buffer da = gpu_testing::to_device(a, dt), db = gpu_testing::to_device(b, dt);
    Buffer dc(dt, {m, n}, Device::cuda);
    std::vector<Buffer> runs;
    for (int run = 0; run < 3; ++run) {
      if (run == 2) cuda::clear_gemm_cache();
      gpu_testing::poison_device(dc);
      gemm(env.ctx, dt, GemmShape{false, true, m, n, k}, 1.0, da.tensor().data, db.tensor().data,
           0.0, dc.tensor().data);
      runs.push_back(gpu_testing::to_host(dc, DType::f64));
    }
    // CPU twin in double on the rounded inputs.
    Buffer ar = gpu_testing::rounded(a, dt, DType::f64), br = gpu_testing::rounded(b, dt, DType::f64);
    Buffer want(DType::f64, {m, n});
    gemm(testing::cpu_context(), DType::f64, GemmShape{false, true, m, n, k}, 1.0,
         ar.tensor().data, br.tensor().data, 0.0, want.tensor().data);
    EXPECT_LE(gpu_testing::scaled_error(runs[0], want), gpu_testing::tolerance(dt)) << dtype_name(dt);
    for (int run = 1; run < 3; ++run)
      for (int64_t i = 0; i < m * n; ++i)
        ASSERT_EQ(runs[run].as<double>()[i], runs[0].as<double>()[i]) << "run " << run;
  }
}

TEST(GemmGpu, ColumnSumsAreDeterministicAndMatchReference) {
  TFM_SKIP_WITHOUT_GPU();
  GpuEnv env;
  for (DType xt : {DType::f32, DType::bf16, DType::f16})
    for (DType ot : {DType::f32, xt})
      for (int64_t rows : {1, 7, 512, 513, 2000})
        for (int64_t cols : {1, 33, 100})
          for (bool acc : {false, true}) {
            SCOPED_TRACE(cat(dtype_name(xt), "→", dtype_name(ot), " rows=", rows, " cols=", cols,
                             " accumulate=", acc));
            int64_t ld = cols + 2;
            Buffer x = testing::random_buffer<float>({rows, ld}, 5);
            Buffer init = testing::random_buffer<float>({cols}, 6);
            Buffer dx = gpu_testing::to_device(x, xt);
            Buffer out = gpu_testing::to_device(init, ot);
            if (!acc) gpu_testing::poison_device(out);
            cuda::column_sums(env.ctx, xt, dx.tensor().data, rows, cols, ld, ot,
                              out.tensor().data, acc);
            Buffer got = gpu_testing::to_host(out, DType::f64);
            Buffer again = gpu_testing::to_device(init, ot);
            if (!acc) gpu_testing::poison_device(again);
            cuda::column_sums(env.ctx, xt, dx.tensor().data, rows, cols, ld, ot,
                              again.tensor().data, acc);
            Buffer got2 = gpu_testing::to_host(again, DType::f64);
            Buffer xr = gpu_testing::rounded(x, xt, DType::f64);
            Buffer ir = gpu_testing::rounded(init, ot, DType::f64);
            Buffer want(DType::f64, {cols});
            for (int64_t j = 0; j < cols; ++j) {
              double s = acc ? ir.as<double>()[j] : 0.0;
              for (int64_t r = 0; r < rows; ++r) s += xr.as<double>()[r * ld + j];
              want.as<double>()[j] = s;
            }
            EXPECT_LE(gpu_testing::scaled_error(got, want),
                      ot == DType::f32 ? 1e-5 : gpu_testing::tolerance(ot));
            for (int64_t j = 0; j < cols; ++j)
              ASSERT_EQ(got.as<double>()[j], got2.as<double>()[j]) << "not deterministic";
          }
}

#else

TFM_GPU_SUITE_SKIPPED_WITHOUT_CUDA(GemmGpu);

#endif

}  // namespace
}  // namespace tfm
