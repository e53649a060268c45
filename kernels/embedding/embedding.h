// Token embedding scaled by √d_model plus sinusoidal positions (Vaswani et al. §3.4, §3.5):
//   out[b, t, :] = table[tokens[b, t], :] · scale + PE(position_offset + t)
//   PE(pos, 2i) = sin(pos / 10000^(2i/D)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/D))
// tokens [B, T] i32 with every id in [0, V) (checked on CPU), table [V, D], out [B, T, D].
// position_offset (≥ 0) lets incremental decoding embed one step at its true position.
// An id outside [0, V) throws tfm::Error naming the id, its [b, t] position and V.
//
// Vocabulary-parallel (Megatron-style tensor parallelism): each of P ranks holds a block of rows
// of the [V, D] table; each embeds what it can and the all-reduced sum of the P outputs is the
// unsharded result. Ids owned by another shard give a zero row (plus PE when add_positions), and
// only one rank adds the sinusoids. For ids owned by the rank that adds PE the sum is the
// unsharded output bit for bit (the others add zeros); for other ids it can differ in the last
// bit (the unsharded table·scale + PE is formed in double, maybe fused, and rounded once; the
// all-reduce adds two separately rounded terms): ~1e-7 relative in f32, ~1e-16 in f64.
#pragma once
#include "kernels/core/context.h"

namespace tfm {

struct EmbeddingShard {
  int64_t vocab_offset = 0;   // this table holds rows [vocab_offset, vocab_offset + table rows)
  int64_t vocab_total = 0;    // ids must lie in [0, vocab_total); 0: the table's row count
  bool add_positions = true;  // false: lookup only (under TP only one rank adds the sinusoids,
                              // so the all-reduced sum equals the unsharded result exactly)
};

void embedding_forward(const Context& ctx, const Tensor& tokens, const Tensor& table,
                       double scale, const Tensor& out, int64_t position_offset = 0,
                       const EmbeddingShard& shard = EmbeddingShard{});

// dtable[tokens[b, t], :] += scale · dout[b, t, :]  (positions have no parameters). With a shard,
// only ids in [vocab_offset, vocab_offset + rows) accumulate, into row id − vocab_offset.
void embedding_backward(const Context& ctx, const Tensor& tokens, const Tensor& dout,
                        double scale, const Tensor& dtable,
                        const EmbeddingShard& shard = EmbeddingShard{});

// The sinusoid PE(pos, i) itself, the single definition both twins and tests use.
double sinusoidal_position(int64_t pos, int64_t i, int64_t d_model);

}  // namespace tfm
