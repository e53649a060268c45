// CUDA twin of the linear layer (kernels/linear/linear.h), on cuBLASLt (kernels/gemm/gemm_cuda.h):
//   forward:  y [M, N] = act(x [M, K] · wᵀ + b)   one GEMM, bias and ReLU fused in its epilogue
//   backward: dy ← dy · [y > 0]                    (relu only; in place, an element-wise kernel)
//             dx  = dy · w  (+= with accumulate_dx: beta = 1)
//             dw += dyᵀ · x  (beta = 1)
//             db += Σ_rows dy  (BGRADB epilogue of the dw GEMM into scratch, then added; or a
//                                deterministic column-sum kernel)
// dtypes: x, w, y, dy, dx share the activation dtype (f32, bf16 or f16). b is that dtype or f32.
// dw and db are that dtype or f32 — fp32 master gradients take bf16/f16 inputs with fp32 output
// straight from cuBLASLt. Accumulation is fp32 throughout.
#pragma once
#include "kernels/linear/linear.h"

namespace tfm::cuda {

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    Activation act, const Tensor& y);

void linear_backward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                     Activation act, const Tensor& dy, const Tensor& dx, const Tensor& dw,
                     const Tensor& db, bool accumulate_dx = false);

// How linear_backward forms db when dw is also wanted: through the dw GEMM's bias-gradient
// epilogue when cuBLASLt offers an algorithm for it (the default), or always with the column-sum
// kernel. Process-wide; for tests and for bisecting a suspected epilogue problem.
enum class BiasGradPath { epilogue_if_available, column_sum_kernel };
void set_linear_bias_grad_path(BiasGradPath path);
BiasGradPath linear_bias_grad_path();

}  // namespace tfm::cuda
