// The process grid: world = DP × TP, and the context that carries its communicators.
//
// Layout (Megatron's): tensor-parallel ranks are adjacent, so a TP group sits on one node where
// the links are fastest. With tp = 2 and 8 ranks:
//
//   world rank   0 1 | 2 3 | 4 5 | 6 7
//   dp_rank      0 0 | 1 1 | 2 2 | 3 3     dp_rank = r / tp
//   tp_rank      0 1 | 0 1 | 0 1 | 0 1     tp_rank = r % tp
//   TP groups    {0,1} {2,3} {4,5} {6,7}   same r / tp: they split one model replica's layers
//   DP groups    {0,2,4,6} {1,3,5,7}       same r % tp: they hold the same shard, different data
//
// ProcessGrid is that arithmetic alone (no MPI, so it is tested for any world size).
// ParallelContext builds the communicators once, from a World, and is passed explicitly to
// whatever needs them (model layers for TP, the trainer for DP); there are no globals.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/world.h"

namespace tfm::comm {

class ProcessGrid {
 public:
  // Throws tfm::Error naming both numbers unless tp ≥ 1 divides world_size.
  ProcessGrid(int world_size, int tp);

  int world_size() const { return world_size_; }
  int tp_size() const { return tp_; }
  int dp_size() const { return world_size_ / tp_; }
  int dp_rank(int world_rank) const { return world_rank / tp_; }
  int tp_rank(int world_rank) const { return world_rank % tp_; }
  int world_rank(int dp_rank, int tp_rank) const { return dp_rank * tp_ + tp_rank; }
  std::vector<int> tp_group(int world_rank) const;  // world ranks, in tp-rank order
  std::vector<int> dp_group(int world_rank) const;  // world ranks, in dp-rank order
  std::string describe() const;  // "8 ranks = DP 4 x TP 2"

 private:
  int world_size_;
  int tp_;
};

enum class Axis { world, dp, tp };
const char* axis_name(Axis a);

struct ParallelOptions {
  int tp = 1;                      // tensor-parallel degree; must divide the world size
  Device device = Device::cpu;     // where the buffers of comm()'s collectives live
  CommOptions comm;                // deadline, compute stream
  bool select_cuda_device = true;  // cuda: cudaSetDevice(local_rank % device count) first
};

class ParallelContext {
 public:
  // Collective over the world: every rank builds its context at the same point.
  ParallelContext(const World& world, const ParallelOptions& options = {});
  ~ParallelContext();
  ParallelContext(const ParallelContext&) = delete;
  ParallelContext& operator=(const ParallelContext&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return grid_.world_size(); }
  int dp_rank() const { return grid_.dp_rank(world_rank_); }
  int dp_size() const { return grid_.dp_size(); }
  int tp_rank() const { return grid_.tp_rank(world_rank_); }
  int tp_size() const { return grid_.tp_size(); }
  int local_rank() const { return local_rank_; }
  const ProcessGrid& grid() const { return grid_; }
  Device device() const { return device_; }
  const World& world_info() const { return world_; }

  // Collectives on device() memory (NCCL on cuda, MPI or self on cpu).
  Communicator& comm(Axis a) { return *on_device_[int(a)]; }
  Communicator& world() { return comm(Axis::world); }
  Communicator& dp() { return comm(Axis::dp); }
  Communicator& tp() { return comm(Axis::tp); }
  // Collectives on host memory over the same groups (loss sums, flags, data positions); the
  // same objects as comm() when device() is cpu.
  Communicator& host_comm(Axis a) { return host_[int(a)] ? *host_[int(a)] : *on_device_[int(a)]; }
  // The group's MPI communicator (MPI_COMM_NULL without MPI), for code that needs MPI itself.
  MPI_Comm mpi_comm(Axis a) const { return mpi_[int(a)]; }

  // "rank 5 of 8 = dp 2 of 4, tp 1 of 2 (local rank 1, cpu)"
  std::string describe() const;

 private:
  void build(const ParallelOptions& options);
  void release();  // communicators first, then the MPI communicators they were made from

  const World& world_;
  ProcessGrid grid_;
  Device device_;
  int world_rank_ = 0;
  int local_rank_ = 0;
  MPI_Comm mpi_[3] = {MPI_COMM_NULL, MPI_COMM_NULL, MPI_COMM_NULL};  // [Axis]
  std::unique_ptr<Communicator> on_device_[3];  // [Axis]
  std::unique_ptr<Communicator> host_[3];  // [Axis]; empty when device() is cpu
};

}  // namespace tfm::comm
