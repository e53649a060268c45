// NcclCommunicator: collectives on device memory through NCCL (built when CMake finds NCCL;
// TFM_HAVE_NCCL is then defined).
//
// Bootstrap: group rank 0 makes the NCCL unique id and broadcasts it over the group's MPI
// communicator (a group of one needs no MPI). The communicator is created non-blocking
// (ncclConfig_t.blocking = 0) and polled with ncclCommGetAsyncError, so even creation has a
// deadline.
//
// Streams: NCCL runs on the communicator's own stream. Each collective first makes that stream
// wait for the compute stream (CommOptions::compute_stream, an event recorded there), so the
// buffers hold what the computation wrote; its completion is an event recorded after it.
// Request::wait() blocks the host until that event; Request::wait_stream(s) makes stream s wait
// for it on the device without blocking the host, which is how the trainer overlaps gradient
// buckets with backward.
//
// Deadlines: a watchdog thread polls every collective in flight and the communicator's
// asynchronous error. A collective older than timeout_seconds(), or an NCCL error, prints which
// rank, operation and group, calls ncclCommAbort (so NCCL kernels stop spinning) and ends the
// job (MPI_Abort).
#pragma once
#if defined(TFM_HAVE_NCCL)
#include <mpi.h>

#include <memory>

#include "comm/communicator.h"

namespace tfm::comm {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`'s ranks (MPI_COMM_NULL: a group of one without MPI). The CUDA
  // device must already be selected (ParallelContext does it from the local rank).
  NcclCommunicator(MPI_Comm bootstrap, std::string name, CommOptions options = {});
  // Waits for the collectives in flight, then finalises and destroys the NCCL communicator.
  ~NcclCommunicator() override;

  const GroupInfo& group() const override { return group_; }
  Device device() const override { return Device::cuda; }
  const char* backend() const override { return "nccl"; }
  double timeout_seconds() const override { return timeout_; }
  void* stream() const;  // the communicator's cudaStream_t

  Request all_reduce_async(const Tensor& inout, ReduceOp op = ReduceOp::sum) override;
  Request reduce_scatter_async(const Tensor& in, const Tensor& out,
                               ReduceOp op = ReduceOp::sum) override;
  Request all_gather_async(const Tensor& in, const Tensor& out) override;
  Request broadcast_async(const Tensor& inout, int root) override;
  Request barrier_async() override;

  struct Impl;

 private:
  GroupInfo group_;
  double timeout_;
  std::unique_ptr<Impl> impl_;
};

// NCCL's version as "2.28.9".
std::string nccl_version();

}  // namespace tfm::comm
#endif  // TFM_HAVE_NCCL
