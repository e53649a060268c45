// CUDA twin of inverted dropout (kernels/dropout/dropout.h): the same mask as the CPU twin,
// element i kept when philox_bits(seed, dropout_element(spec, i)) >= dropout_threshold(p), column
// blocks (spec.block > 0) included. One thread per Philox counter (four consecutive global
// elements, one philox4x32_10 call; kernels/core/philox.h), per local row for a column block, so
// the mask does not depend on the launch shape. f32, bf16 or f16; output may alias input.
#pragma once
#include "kernels/dropout/dropout.h"

namespace tfm::cuda {

void dropout_forward(const Context& ctx, const Tensor& x, const Tensor& y, const DropoutSpec& d);
void dropout_backward(const Context& ctx, const Tensor& dy, const Tensor& dx,
                      const DropoutSpec& d);
// Both directions are this one masked scale: out = keep ? in / (1 − p) : 0 (op names the caller
// in messages).
void dropout_apply(const Context& ctx, const Tensor& in, const Tensor& out, const DropoutSpec& d,
                   const char* op);

}  // namespace tfm::cuda
