// Layer normalisation over the last dimension (Ba et al. 2016), as the paper's Add & Norm uses:
//   y = (x − mean) · rstd · gamma + beta,  rstd = 1 / sqrt(var + eps),  var biased (÷ D).
// x, y [M, D]; gamma, beta [D]; mean, rstd [M] in the accumulation type (f32, or f64 when x is
// f64), saved for backward. x may have any rank ≥ 1 (rows × last dimension); mean and rstd then
// hold one value per row (any shape with that many elements).
#pragma once
#include "kernels/core/context.h"

namespace tfm {

void layer_norm_forward(const Context& ctx, const Tensor& x, const Tensor& gamma,
                        const Tensor& beta, double eps, const Tensor& y, const Tensor& mean,
                        const Tensor& rstd);

// dx written (=; may alias dy); dgamma, dbeta accumulated (+=), deterministically (the result
// does not depend on the thread count); either may be undefined (a frozen parameter).
void layer_norm_backward(const Context& ctx, const Tensor& dy, const Tensor& x,
                         const Tensor& gamma, const Tensor& mean, const Tensor& rstd,
                         const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta);

}  // namespace tfm
