// GEMM: C = alpha · op(A) · op(B) + beta · C, row-major, op(X) = X or Xᵀ.
//   op(A) [M, K], op(B) [K, N], C [M, N]; lda/ldb/ldc are row strides in elements, so a head's
//   columns of a [B·T, H·d] activation can be addressed without a copy (attention uses this).
// CPU twin: OpenBLAS (sgemm/dgemm). CUDA twin: cuBLASLt (bf16/fp16 in, fp32 accumulate).
#pragma once
#include <cstdint>

#include "kernels/core/context.h"

namespace tfm {

struct GemmShape {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;  // 0: the contiguous default for the shape
};

// A, B, C are base pointers typed by `dtype`; shapes are in `s`.
void gemm(const Context& ctx, DType dtype, const GemmShape& s, double alpha, const void* a,
          const void* b, double beta, void* c);

namespace cpu {
// Typed entry points for the CPU twins of other ops (float and double).
void gemm(const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c);
void gemm(const GemmShape& s, double alpha, const double* a, const double* b, double beta,
          double* c);
}  // namespace cpu

}  // namespace tfm
