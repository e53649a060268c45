// Inverted dropout with a counter-based mask (kernels/core/philox.h):
//   y[i] = keep(i) ? x[i] / (1 − p) : 0,  keep(i) = philox_bits(seed, offset + i) >= p·2^32.
// The mask is a pure function of (seed, offset, i): backward regenerates it, the CUDA twin draws
// the same one, and it does not depend on the thread count or the parallel layout.
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
