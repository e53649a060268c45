// Inverted dropout with a counter-based mask (kernels/core/philox.h):
//   y[i] = keep(i) ? x[i] / (1 − p) : 0,  keep(i) = philox_bits(seed, dropout_element(d, i)) >= p·2^32,
// dropout_element(d, i) = offset + i, or offset + the logical index of i when the spec describes
// a column block of a larger tensor (DropoutSpec::block, dropout_column_block()).
// The mask is a pure function of (seed, offset, block, i): backward regenerates it, the CUDA twin
// draws the same one, and it depends neither on the thread count nor on the tensor-parallel
// layout (a [R, C/P] column block draws exactly the mask of those columns of the [R, C] tensor).
#pragma once
#include "kernels/core/context.h"
#include "kernels/core/philox.h"

namespace tfm {

// p must lie in [0, 1) (tfm::Error otherwise). y may alias x. With p == 0, y = x.
void dropout_forward(const Context& ctx, const Tensor& x, const Tensor& y, const DropoutSpec& d);
// dx = dy · keep / (1 − p); dx may alias dy.
void dropout_backward(const Context& ctx, const Tensor& dy, const Tensor& dx,
                      const DropoutSpec& d);

}  // namespace tfm
