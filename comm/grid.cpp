#include "comm/grid.h"

#include "comm/factory.h"
#include "comm/mpi_communicator.h"
#include "kernels/core/device.h"

namespace tfm::comm {

ProcessGrid::ProcessGrid(int world_size, int tp) : world_size_(world_size), tp_(tp) {
  TFM_CHECK(world_size >= 1, "process grid: world size ", world_size, " is not positive");
  TFM_CHECK(tp >= 1, "process grid: tensor-parallel size ", tp, " is not positive");
  TFM_CHECK(world_size % tp == 0, "process grid: world size ", world_size,
            " is not divisible by tensor-parallel size ", tp, " (world = DP x TP; choose a tp ",
            "that divides ", world_size, ")");
}

std::vector<int> ProcessGrid::tp_group(int r) const {
  std::vector<int> g;
  for (int t = 0; t < tp_; ++t) g.push_back(world_rank(dp_rank(r), t));
  return g;
}

std::vector<int> ProcessGrid::dp_group(int r) const {
  std::vector<int> g;
  for (int d = 0; d < dp_size(); ++d) g.push_back(world_rank(d, tp_rank(r)));
  return g;
}

std::string ProcessGrid::describe() const {
  return cat(world_size_, " ranks = DP ", dp_size(), " x TP ", tp_);
}

const char* axis_name(Axis a) {
  switch (a) {
    case Axis::world: return "world";
    case Axis::dp: return "dp";
    case Axis::tp: return "tp";
  }
  return "?";
}

ParallelContext::ParallelContext(const World& world, const ParallelOptions& options)
    : world_(world),
      grid_(world.size(), options.tp),
      device_(options.device),
      world_rank_(world.rank()),
      local_rank_(world.local_rank()) {
  try {
    build(options);
  } catch (...) {
    release();  // the MPI communicators made so far; the members free the rest
    throw;
  }
  world_.attach();
}

void ParallelContext::build(const ParallelOptions& options) {
  if (device_ == Device::cuda) {
    int n = cuda_device_count();
    TFM_CHECK(n > 0, "parallel context on rank ", world_rank_, ": device cuda asked for but ",
              cuda_compiled() ? "no GPU is visible" : "this tfm was built without CUDA");
    if (options.select_cuda_device) cuda_set_device(local_rank_ % n);
  }

  if (world_.uses_mpi()) {
    {
      detail::MpiCallGuard guard;
      const std::string where = cat(" building ", grid_.describe(), " on rank ", world_rank_);
      MPI_Comm& w = mpi_[int(Axis::world)];
      detail::mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &w), "MPI_Comm_dup", where);
      // Same tp_rank → one DP group, ordered by dp_rank; same dp_rank → one TP group.
      detail::mpi_check(MPI_Comm_split(w, tp_rank(), dp_rank(), &mpi_[int(Axis::dp)]),
                        "MPI_Comm_split (dp)", where);
      detail::mpi_check(MPI_Comm_split(w, dp_rank(), tp_rank(), &mpi_[int(Axis::tp)]),
                        "MPI_Comm_split (tp)", where);
    }
    // MPI must have built exactly the groups the grid describes.
    GroupInfo dp = mpi_group_info(mpi_[int(Axis::dp)], "dp");
    GroupInfo tp = mpi_group_info(mpi_[int(Axis::tp)], "tp");
    TFM_CHECK(dp.world_ranks == grid_.dp_group(world_rank_) && dp.rank == dp_rank(), "rank ",
              world_rank_, ": MPI built ", dp.describe(), " but the grid expects rank ",
              dp_rank(), " of another");
    TFM_CHECK(tp.world_ranks == grid_.tp_group(world_rank_) && tp.rank == tp_rank(), "rank ",
              world_rank_, ": MPI built ", tp.describe(), " but the grid expects rank ",
              tp_rank(), " of another");
  }

  // Creation order is the same on every rank: world, dp, tp (host first, then device).
  for (Axis a : {Axis::world, Axis::dp, Axis::tp}) {
    auto host = make_communicator(mpi_[int(a)], axis_name(a), Device::cpu, options.comm);
    (device_ == Device::cpu ? on_device_ : host_)[int(a)] = std::move(host);
  }
  if (device_ != Device::cpu) {
    for (Axis a : {Axis::world, Axis::dp, Axis::tp})
      on_device_[int(a)] = make_communicator(mpi_[int(a)], axis_name(a), device_, options.comm);
  }
}

void ParallelContext::release() {
  for (auto& c : on_device_) c.reset();
  for (auto& c : host_) c.reset();
  if (detail::mpi_active()) {
    detail::MpiCallGuard guard;
    for (MPI_Comm& c : mpi_)
      if (c != MPI_COMM_NULL) MPI_Comm_free(&c);
  }
}

ParallelContext::~ParallelContext() {
  release();
  world_.detach();
}

std::string ParallelContext::describe() const {
  return cat("rank ", world_rank_, " of ", world_size(), " = dp ", dp_rank(), " of ", dp_size(),
             ", tp ", tp_rank(), " of ", tp_size(), " (local rank ", local_rank_, ", ",
             device_name(device_), ")");
}

}  // namespace tfm::comm
