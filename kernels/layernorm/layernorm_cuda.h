// CUDA twin of layer normalisation over the last dimension (kernels/layernorm/layernorm.h).
//   forward:  one warp per row; mean and variance in fp32 by two passes (as the CPU twin), then
//             y = (x − mean)·rstd·gamma + beta; mean, rstd [rows] saved in f32.
//   backward: dgamma += Σ_r dy·x̂, dbeta += Σ_r dy by column blocks over fixed chunks of rows
//             (fp32 partials in the workspace, then a second kernel adds them in order:
//             deterministic); then dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·gamma, one warp
//             per row (dx may alias dy: the parameter sums read dy first).
// dtypes: x, y, dy, dx in f32, bf16 or f16; gamma, beta, dgamma, dbeta in that dtype or f32
// (fp32 master parameters); mean, rstd f32. Width D up to 2^31 − 1.
#pragma once
#include "kernels/layernorm/layernorm.h"

namespace tfm::cuda {

void layer_norm_forward(const Context& ctx, const Tensor& x, const Tensor& gamma,
                        const Tensor& beta, double eps, const Tensor& y, const Tensor& mean,
                        const Tensor& rstd);

// Needs ctx.workspace when dgamma or dbeta is wanted.
void layer_norm_backward(const Context& ctx, const Tensor& dy, const Tensor& x,
                         const Tensor& gamma, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta);

}  // namespace tfm::cuda
