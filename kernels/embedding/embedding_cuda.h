// CUDA twin of the scaled token embedding plus sinusoidal positions (kernels/embedding/embedding.h).
//   forward:  out[b, t, :] = table[tokens[b, t], :] · scale + PE(position_offset + t)
//             one block per position t and group of 8 sequences: PE(t, j) is formed once (in
//             double, as the CPU twin) and added to each sequence's row; the sum is formed in
//             double and rounded once to out's dtype.
//   backward: dtable[tokens[b, t], :] += scale · dout[b, t, :], deterministically: the (token,
//             position) pairs are sorted by token with a stable radix sort (CUB), then each run of
//             one token is summed, in position order, by a single warp per 32 columns — no
//             atomics, so the result does not change from run to run.
// dtypes: out/dout in f32, bf16 or f16; table/dtable in that dtype or f32 (the fp32 master copy
// and its gradient). tokens [B, T] i32 on the device.
// Token ids are validated on the device; a bad id throws tfm::Error naming the id, its [b, t]
// and V, as the CPU twin does — so both directions wait for the stream once per call. Scratch
// (a flag; in backward the sort buffers, ~12 bytes per token plus CUB's temporary space) comes
// from ctx.workspace.
#pragma once
#include "kernels/embedding/embedding.h"

namespace tfm::cuda {

// shard as the public call (already checked by the dispatcher): ids are validated against
// vocab_total; another shard's id reads a zero row in forward and is left out of backward (its
// sort key becomes V_local, which sorts last and is skipped; ~4 more bytes of scratch per token).
void embedding_forward(const Context& ctx, const Tensor& tokens, const Tensor& table,
                       double scale, const Tensor& out, int64_t position_offset = 0,
                       const EmbeddingShard& shard = EmbeddingShard{});

void embedding_backward(const Context& ctx, const Tensor& tokens, const Tensor& dout,
                        double scale, const Tensor& dtable,
                        const EmbeddingShard& shard = EmbeddingShard{});

}  // namespace tfm::cuda
