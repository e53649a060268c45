#include <cblas.h>

#include "kernels/gemm/gemm.h"
#ifdef TFM_HAVE_CUDA
#include "kernels/gemm/gemm_cuda.h"
#endif

namespace tfm {

namespace {
// Fills in default leading dimensions and checks the explicit ones.
GemmShape resolved(GemmShape s) {
  int64_t a_cols = s.trans_a ? s.m : s.k, b_cols = s.trans_b ? s.k : s.n;
  if (!s.lda) s.lda = a_cols;
  if (!s.ldb) s.ldb = b_cols;
  if (!s.ldc) s.ldc = s.n;
  TFM_CHECK(s.m >= 0 && s.n >= 0 && s.k >= 0, "gemm: negative size m=", s.m, " n=", s.n,
            " k=", s.k);
  TFM_CHECK(s.lda >= a_cols && s.ldb >= b_cols && s.ldc >= s.n, "gemm: leading dimension too small");
  return s;
}
CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }
}  // namespace

namespace cpu {

void gemm(const GemmShape& shape, float alpha, const float* a, const float* b, float beta,
          float* c) {
  GemmShape s = resolved(shape);
  if (s.m == 0 || s.n == 0) return;
  cblas_sgemm(CblasRowMajor, tr(s.trans_a), tr(s.trans_b), int(s.m), int(s.n), int(s.k), alpha, a,
              int(s.lda), b, int(s.ldb), beta, c, int(s.ldc));
}

void gemm(const GemmShape& shape, double alpha, const double* a, const double* b, double beta,
          double* c) {
  GemmShape s = resolved(shape);
  if (s.m == 0 || s.n == 0) return;
  cblas_dgemm(CblasRowMajor, tr(s.trans_a), tr(s.trans_b), int(s.m), int(s.n), int(s.k), alpha, a,
              int(s.lda), b, int(s.ldb), beta, c, int(s.ldc));
}

}  // namespace cpu

void gemm(const Context& ctx, DType dtype, const GemmShape& s, double alpha, const void* a,
          const void* b, double beta, void* c) {
  if (ctx.device == Device::cuda) {
#ifdef TFM_HAVE_CUDA
    return cuda::gemm(ctx, dtype, s, alpha, a, b, beta, c);
#else
    no_cuda_twin("gemm");
#endif
  }
  dispatch_cpu_float(dtype, "gemm", [&](auto zero) {
    using T = decltype(zero);
    cpu::gemm(s, T(alpha), static_cast<const T*>(a), static_cast<const T*>(b), T(beta),
              static_cast<T*>(c));
  });
}

}  // namespace tfm
