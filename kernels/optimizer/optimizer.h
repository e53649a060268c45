// Adam (Kingma & Ba 2015) with bias correction, over flat buffers, as the paper trains:
// β1 = 0.9, β2 = 0.98, ε = 1e-9. Master weights and moments are f32 (f64 in gradient tests).
//   m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²
//   p -= lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)   [+ lr·wd·p, decoupled, if wd > 0]
#pragma once
#include <cstdint>

#include "kernels/core/context.h"

namespace tfm {

struct AdamHyper {
  double lr = 0.0;
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-9;
  double weight_decay = 0.0;
  int64_t step = 1;  // t ≥ 1, for bias correction
};

// params, grads, m, v: same dtype and count. working_copy (optional, GPU): the bf16/fp16 copy
// of the updated params, written in the same pass.
void adam_step(const Context& ctx, const AdamHyper& h, const Tensor& params, const Tensor& grads,
               const Tensor& m, const Tensor& v, const Tensor& working_copy = Tensor());

// Global gradient-norm clipping (Pascanu et al. 2013): scales grads by min(1, max_norm / ‖g‖)
// and returns ‖g‖ before clipping. max_norm <= 0 only measures. Single-process helper; the
// distributed trainer composes sum_squares, an all-reduce and scale_inplace itself.
double clip_grad_norm(const Context& ctx, const Tensor& grads, double max_norm);

}  // namespace tfm
