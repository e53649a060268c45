// Tensor parallelism as Megatron-LM does it (Shoeybi et al. 2019, §3), over the TP group of the
// process grid (comm/grid.h). Inside one model replica:
//
//   attention   Q, K, V column-parallel: rank r holds heads [r·H/tp, (r+1)·H/tp), i.e. rows
//               [r·D/tp, (r+1)·D/tp) of each [D, D] projection; the out-projection row-parallel:
//               columns [r·D/tp, (r+1)·D/tp) of its weight, so each rank's product is a partial
//               sum of the output
//   FFN         fc1 column-parallel (rows [r·F/tp, …) of [F, D]), fc2 row-parallel
//   embeddings  vocabulary-parallel: rows [r·V/tp, …) of [V, D]; the lookup of an id another
//               rank holds is zero, and the pre-softmax projection gives each rank the logits of
//               its own vocabulary slice, so the [N, V] logits are never gathered whole
//   layer norms and the biases of row-parallel layers: replicated, every rank the same values
//
// The communication sits in two paired mappings (Megatron's f and g), not inline in the layers:
//   copy_to_tp_region     (f) enters a column-parallel region: forward identity (every rank
//                             already holds the whole input); backward all-reduce, since each
//                             rank's input gradient covers only its own heads or columns
//   reduce_from_tp_region (g) leaves a row-parallel region: forward all-reduce of the partial
//                             sums; backward identity (the output gradient is replicated)
// So one attention block or FFN costs one all-reduce forward and one backward. Cross-attention
// projects the encoder output once per decoder layer; its K/V input gradients are partial sums
// too, but they only add up into d(memory), so the model all-reduces d(memory) once after the
// decoder instead of once per layer (a sum commutes with the reduction).
//
// Numerically, TP = k computes what TP = 1 computes up to the order of summation in the
// row-parallel products and the vocabulary reductions; the dropout masks are the same (their
// counters are indexed by position in the logical tensor: kernels/core/philox.h).
#pragma once
#include <cstdint>

#include "kernels/core/context.h"
#include "model/config.h"

namespace tfm {
namespace comm {
class Communicator;
}

struct TensorParallel {
  int rank = 0;                           // this rank's place in its TP group
  int size = 1;                           // TP degree
  comm::Communicator* group = nullptr;    // the TP group's communicator (null when size == 1)
  comm::Communicator* host_group = nullptr;  // host-memory collectives over the same ranks
                                             // (the same object on the CPU)

  bool active() const { return size > 1; }
  // A dimension of `total` split evenly: this rank's length and its first index.
  int64_t local(int64_t total) const { return total / size; }
  int64_t first(int64_t total) const { return int64_t(rank) * (total / size); }
};

// Throws tfm::Error naming the option when the model cannot be split over `tp` ranks: heads,
// d_ff and the vocabulary must divide by it.
void check_tensor_parallel(const ModelConfig& cfg, int tp);

// Megatron's f: see the header comment.
inline Tensor copy_to_tp_region_forward(const TensorParallel&, const Tensor& x) { return x; }
void copy_to_tp_region_backward(const TensorParallel& tp, const Tensor& dx);  // all-reduce

// Megatron's g: see the header comment.
void reduce_from_tp_region_forward(const TensorParallel& tp, const Tensor& y);  // all-reduce
inline Tensor reduce_from_tp_region_backward(const TensorParallel&, const Tensor& dy) { return dy; }

// out [tp, …] = every TP rank's `in`, in rank order (the vocabulary-parallel loss's statistics;
// only with tp.active()).
void all_gather_tp(const TensorParallel& tp, const Tensor& in, const Tensor& out);

}  // namespace tfm
