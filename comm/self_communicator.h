// SelfCommunicator: the communicator of a group of one (a world of one, or a TP or DP group of
// size 1). Reductions over one rank are the identity, so all_reduce and broadcast leave the
// buffer as it is; reduce_scatter and all_gather copy in to out when they are different buffers.
// Every Request it returns is already complete. On cuda the copies are queued on the compute
// stream (CommOptions::compute_stream), so they are ordered with the work that uses them.
#pragma once
#include "comm/communicator.h"

namespace tfm::comm {

class SelfCommunicator final : public Communicator {
 public:
  // `world_rank` names the one rank in messages; `name` is the group's role.
  SelfCommunicator(std::string name, int world_rank, Device device, CommOptions options = {});

  const GroupInfo& group() const override { return group_; }
  Device device() const override { return device_; }
  const char* backend() const override { return "self"; }
  double timeout_seconds() const override { return timeout_; }

  Request all_reduce_async(const Tensor& inout, ReduceOp op = ReduceOp::sum) override;
  Request reduce_scatter_async(const Tensor& in, const Tensor& out,
                               ReduceOp op = ReduceOp::sum) override;
  Request all_gather_async(const Tensor& in, const Tensor& out) override;
  Request broadcast_async(const Tensor& inout, int root) override;
  Request barrier_async() override;

 private:
  void copy(const Tensor& dst, const Tensor& src);

  GroupInfo group_;
  Device device_;
  double timeout_;
  void* stream_;
};

}  // namespace tfm::comm
