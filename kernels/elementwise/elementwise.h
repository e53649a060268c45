// Small element-wise ops: the residual add, gradient accumulation, scaling, reductions for the
// global gradient norm. All tensors of one call have the same dtype and element count, except
// convert's, which changes the dtype.
#pragma once
#include "kernels/core/context.h"

namespace tfm {

void add(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& out);  // out = a + b (may alias)
void accumulate(const Context& ctx, const Tensor& dst, const Tensor& src);          // dst += src
void copy(const Context& ctx, const Tensor& src, const Tensor& dst);                // dst = src
// dst = src rounded to dst's dtype (to nearest, ties to even): the fp32 master weights into their
// bf16/f16 working copy. Floating dtypes (f32, f64, bf16, f16; f64 on CPU only); same count.
void convert(const Context& ctx, const Tensor& src, const Tensor& dst);
void fill_zero(const Context& ctx, const Tensor& x);                               // x = 0
void scale_inplace(const Context& ctx, const Tensor& x, double factor);            // x *= factor
// Σ x², accumulated in double; inf or NaN anywhere in x gives a non-finite result (the fp16
// loss-scaling overflow check relies on this).
double sum_squares(const Context& ctx, const Tensor& x);

}  // namespace tfm
