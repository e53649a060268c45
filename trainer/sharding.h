// Moving parameters between a tensor-parallel rank's layout and the logical (unsharded) layout.
//
// A ParameterStore built for TP rank r of k (model/parameters.h) holds, for each parameter, the
// part its Split gives rank r; a store built for TP = 1 of the same model holds the logical
// tensors, in the same order under the same names. Checkpoints hold logical tensors, so a run
// can continue under any layout: writing gathers the shards (gather_logical), reading takes a
// slice straight from the file (trainer/checkpoint.h: HDF5 hyperslabs).
#pragma once
#include "kernels/core/tensor.h"
#include "model/parameters.h"

namespace tfm {
namespace comm {
class Communicator;
}

// Collective over the TP group `tp` (null or a group of one: a plain copy). `local_flat` is a
// buffer in `local`'s layout (its values, or an Adam moment of the same layout; host memory);
// every rank of the group receives the logical tensors in `logical_flat` (host, `logical`'s
// layout). Throws tfm::Error when the two stores do not describe the same model.
void gather_logical(const ParameterStore& local, const Tensor& local_flat, comm::Communicator* tp,
                    const ParameterStore& logical, const Tensor& logical_flat);

// The inverse, without communication: this rank's parts of the logical tensors in
// `logical_flat` into `local_flat` (host buffers).
void scatter_logical(const ParameterStore& logical, const Tensor& logical_flat,
                     const ParameterStore& local, const Tensor& local_flat);

}  // namespace tfm
