// Token embedding scaled by √d_model plus sinusoidal positions (Vaswani et al. §3.4, §3.5):
//   out[b, t, :] = table[tokens[b, t], :] · scale + PE(position_offset + t)
//   PE(pos, 2i) = sin(pos / 10000^(2i/D)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/D))
// tokens [B, T] i32 with every id in [0, V) (checked on CPU), table [V, D], out [B, T, D].
// position_offset (≥ 0) lets incremental decoding embed one step at its true position.
// An id outside [0, V) throws tfm::Error naming the id, its [b, t] position and V.
#pragma once
#include "kernels/core/context.h"

namespace tfm {

void embedding_forward(const Context& ctx, const Tensor& tokens, const Tensor& table,
                       double scale, const Tensor& out, int64_t position_offset = 0);

// dtable[tokens[b, t], :] += scale · dout[b, t, :]  (positions have no parameters).
void embedding_backward(const Context& ctx, const Tensor& tokens, const Tensor& dout,
                        double scale, const Tensor& dtable);

// The sinusoid PE(pos, i) itself, the single definition both twins and tests use.
double sinusoidal_position(int64_t pos, int64_t i, int64_t d_model);

}  // namespace tfm
