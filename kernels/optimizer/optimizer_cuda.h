// CUDA twin of adam_step (kernels/optimizer/optimizer.h): same contract and arguments, called by
// the public dispatcher when ctx.device == Device::cuda. One grid-stride kernel over the flat
// f32 buffers (16-byte loads and stores when the pointers allow), which also writes the
// bf16/f16 (or f32) working copy of the updated parameters when one is given.
//
// clip_grad_norm needs no twin of its own: it composes sum_squares and scale_inplace
// (kernels/elementwise), whose CUDA twins run it on the GPU. Nor does fp16 loss scaling need a
// fused "inf/NaN check + sum of squares": sum_squares propagates a non-finite gradient into a
// non-finite sum, so the norm that clipping computes anyway is the overflow check.
#pragma once
#include "kernels/optimizer/optimizer.h"

namespace tfm::cuda {

// params, grads, m, v: f32, same count (checked by the dispatcher). working_copy: undefined, or
// bf16/f16/f32 with params' element count.
void adam_step(const Context& ctx, const AdamHyper& h, const Tensor& params, const Tensor& grads,
               const Tensor& m, const Tensor& v, const Tensor& working_copy);

}  // namespace tfm::cuda
