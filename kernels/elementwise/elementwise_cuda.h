// CUDA twins of the element-wise ops (kernels/elementwise/elementwise.h): f32, bf16 or f16,
// fp32 arithmetic, 16-byte vector access when every pointer of the call is 16-byte aligned
// (a scalar kernel otherwise, and for the elements past the last whole vector).
// sum_squares accumulates in double and returns to the host, so it waits for the stream.
#pragma once
#include "kernels/elementwise/elementwise.h"

namespace tfm::cuda {

void add(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out);
void accumulate(const Context& ctx, const Tensor& dst, const Tensor& src);
void copy(const Context& ctx, const Tensor& src, const Tensor& dst);
void convert(const Context& ctx, const Tensor& src, const Tensor& dst);  // f32/bf16/f16 → any of them
void fill_zero(const Context& ctx, const Tensor& x);
void scale_inplace(const Context& ctx, const Tensor& x, double factor);
// Σ x² in double: per-block double partials over fixed 16384-element chunks, reduced on the
// device in a fixed order (deterministic, independent of the GPU model); inf/NaN propagate.
// Needs ctx.workspace for the partials; synchronises ctx.stream to return the value.
double sum_squares(const Context& ctx, const Tensor& x);

}  // namespace tfm::cuda
