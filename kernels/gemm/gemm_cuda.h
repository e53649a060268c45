// CUDA twin of the GEMM (kernels/gemm/gemm.h) through cuBLASLt, plus the extended entry that
// other ops' CUDA twins use for mixed dtypes and fused epilogues.
//
// Row-major in, column-major cuBLASLt underneath: a row-major X [r, c] with row stride ld is
// the column-major Xᵀ [c, r] with the same ld, so C = op(A)·op(B) is computed as
// Cᵀ = op(B)ᵀ·op(A)ᵀ — cuBLASLt's "A" is our B and its "B" is our A, with m and n swapped.
// Our per-column bias b[N] is then cuBLASLt's per-row bias (length = rows of D = N).
//
// Precision: A and B in bf16, f16 or f32; C/D in the same dtype or f32 (bf16/f16 inputs with f32
// output is how weight gradients accumulate into fp32 master gradients). Computation and
// accumulation in fp32 (CUBLAS_COMPUTE_32F, no TF32), alpha/beta in fp32.
//
// Algorithms come from cublasLtMatmulAlgoGetHeuristic once per (shape, strides, dtypes,
// epilogue, pointer alignments) and are cached. One cuBLASLt handle per device, created on first
// use; one workspace per (device, stream), allocated once on first use of that stream (so the
// step itself does no allocation after the first GEMM on a stream).
#pragma once
#include "kernels/gemm/gemm.h"

namespace tfm::cuda {

// Same contract as tfm::gemm: A, B, C all of `dtype` (f32, bf16 or f16).
void gemm(const Context& ctx, DType dtype, const GemmShape& s, double alpha, const void* a,
          const void* b, double beta, void* c);

// Fused epilogues, in the row-major terms of C [M, N] = op(A) [M, K] · op(B) [K, N]:
//   bias:      C = alpha·op(A)·op(B) + beta·C + bias[j]                    bias [N]
//   relu_bias: C = max(0, alpha·op(A)·op(B) + beta·C + bias[j])            bias [N]
//   relu:      C = max(0, alpha·op(A)·op(B) + beta·C)
//   bgrad_a:   as none, and bias_grad[i] = Σ_k op(A)[i, k]  (=, length M)  cuBLASLt BGRADB
//   bgrad_b:   as none, and bias_grad[j] = Σ_k op(B)[k, j]  (=, length N)  cuBLASLt BGRADA
// bgrad_a on dW = dYᵀ·X (A = dY, trans_a) gives the bias gradient Σ_rows dY of a linear layer.
// The fused ReLU may turn NaN into 0 (the CPU twin passes NaN through).
enum class Epilogue { none, bias, relu_bias, relu, bgrad_a, bgrad_b };
const char* epilogue_name(Epilogue e);

struct GemmEpilogue {
  Epilogue kind = Epilogue::none;
  const void* bias = nullptr;  // bias, relu_bias: [N] of bias_dtype (the C dtype, or f32)
  DType bias_dtype = DType::f32;
  void* bias_grad = nullptr;   // bgrad_a [M] / bgrad_b [N], written (=), in the C dtype
  bool allow_fused = true;     // false: always the plain GEMM plus the stand-in kernels (tests)
};

// The extended GEMM: A and B of ab_dtype, C of c_dtype (= ab_dtype, or f32). When cuBLASLt has
// no algorithm for the fused epilogue, the plain GEMM runs and the epilogue follows as a
// separate kernel (same result, one more pass over C); when it has none even for the plain
// GEMM (operands aligned to less than its kernels accept), classic cuBLAS (cublasGemmEx, fp32
// compute) runs it, and if that fails too tfm::Error names the shape and dtypes. m = 0 or n = 0 does nothing; k = 0 gives
// C = beta·C (exactly 0 for beta = 0, whatever C held) followed by the epilogue.
void gemm_ex(const Context& ctx, const GemmShape& s, DType ab_dtype, DType c_dtype, double alpha,
             const void* a, const void* b, double beta, void* c, const GemmEpilogue& ep = {});

// Whether cuBLASLt offers an algorithm for this GEMM with this epilogue fused (for tests and
// diagnostics; gemm_ex falls back by itself). Pointers matter only through their alignment.
bool gemm_epilogue_fusable(const Context& ctx, const GemmShape& s, DType ab_dtype, DType c_dtype,
                           const void* a, const void* b, const void* c, const GemmEpilogue& ep);

// Deterministic column sums of a row-major matrix X [rows, cols] with row stride ld (elements):
//   out[j] (+)= Σ_r X[r, j]   (accumulate: +=, else =), summed in fp32 in a fixed order.
// X in f32, bf16 or f16; out in f32, bf16 or f16. Scratch for the partial sums comes from
// ctx.workspace (required when rows > 1024). Used for bias gradients (linear's db).
void column_sums(const Context& ctx, DType x_dtype, const void* x, int64_t rows, int64_t cols,
                 int64_t ld, DType out_dtype, void* out, bool accumulate);

// Forgets the cached algorithms (tests use it to check that the cache is only a cache).
void clear_gemm_cache();

}  // namespace tfm::cuda
