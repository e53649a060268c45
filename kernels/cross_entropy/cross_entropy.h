// Softmax cross-entropy with label smoothing, DESIGN.md's one definition. Per position n with
// gold class y = targets[n] and lp = log_softmax(logits[n]) over V classes:
//   loss[n] = (1 − ε)·(−lp[y]) + ε·mean_v(−lp[v]),   nll[n] = −lp[y].
// Positions with targets[n] == ignore_index (padding) get loss = nll = 0 and zero gradient.
// logits [N, V]; targets [N] i32, every other id in [0, V); loss, nll, lse [N] in the
// accumulation type. The probabilities are never stored: backward recomputes them from lse.
#pragma once
#include "kernels/core/context.h"

namespace tfm {

void cross_entropy_forward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                           int32_t ignore_index, double smoothing, const Tensor& loss,
                           const Tensor& nll, const Tensor& lse);

// dlogits[n, v] = grad_scale · (softmax(logits[n])[v] − ((1 − ε)·[v == y] + ε / V)),
// zero rows for ignored positions; written (=), may alias logits.
void cross_entropy_backward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                            const Tensor& lse, int32_t ignore_index, double smoothing,
                            double grad_scale, const Tensor& dlogits);

}  // namespace tfm
