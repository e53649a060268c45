// make_communicator: the right Communicator for a group of ranks and a device.
//   a group of one (or no MPI at all)  → SelfCommunicator: no communication, no MPI needed
//   cpu                                → MpiCommunicator over a duplicate of `comm`
//   cuda                               → NcclCommunicator bootstrapped over `comm` (needs a
//                                        build with NCCL; the CUDA device must already be set)
// Collective over the ranks of `comm`: every one of them must call it, in the same order as any
// other communicator creation on overlapping groups.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>

#include "comm/communicator.h"

namespace tfm::comm {

std::unique_ptr<Communicator> make_communicator(MPI_Comm comm, const std::string& name,
                                                Device device, const CommOptions& options = {});

bool nccl_compiled();  // this build has the NCCL communicator

}  // namespace tfm::comm
