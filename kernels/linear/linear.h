// Linear layer, PyTorch layout:  y [M, N] = act(x [M, K] · wᵀ + b),  w [N, K], b [N] (optional).
// x may have any rank ≥ 1 (leading dimensions are rows): y, dy have x's leading dimensions and
// N last, dx has x's shape. b may be undefined (no bias).
// The FFN's max(0, xW1 + b1) is linear_forward with Activation::relu (fused epilogue on GPU).
//
// Gradient rule for every op in kernels/: parameter gradients accumulate (+=), so gradient
// accumulation over micro-batches and tied weights need no extra buffers; activation gradients
// are written (=) unless an op says otherwise.
#pragma once
#include "kernels/core/context.h"

namespace tfm {

enum class Activation { none, relu };

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                    Activation act, const Tensor& y);

// dy [M, N] is consumed: with Activation::relu it is first masked in place by (y > 0).
// dx [M, K] is written (=), or accumulated (+=) when accumulate_dx — cross-attention's K/V
// projections of the encoder output add into one gradient from every decoder layer.
// dw += dyᵀ·x, db += Σ_rows dy. Any of dx, dw, db may be undefined (not wanted); y is read only
// for Activation::relu and may be undefined otherwise.
void linear_backward(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y,
                     Activation act, const Tensor& dy, const Tensor& dx, const Tensor& dw,
                     const Tensor& db, bool accumulate_dx = false);

}  // namespace tfm
