// World: launch-aware start-up of the processes that train together.
//
// Under a launcher (mpirun, srun, mpiexec.hydra) every process initialises MPI and learns its
// rank, the world size and its local rank (its index among the processes on its node, which
// picks its GPU). Started plainly, with no launcher variables in its environment, a process is a
// world of one and never calls MPI_Init, so `tfm train` on a laptop needs no MPI daemon.
//
// One World per process, created first in main() and destroyed last: its destructor finalises
// MPI, so every ParallelContext and Communicator must be gone by then.
//
//   int main(int argc, char** argv) {
//     tfm::comm::World world(&argc, &argv);
//     tfm::comm::ParallelContext ctx(world, {.tp = 2});
//     ...
//   }
//
// Environment that changes the start-up:
//   TFM_NO_MPI=1                   a world of one even under a launcher
//   TFM_MPI_THREAD_LEVEL=<level>   single | funneled | serialized | multiple (default multiple);
//                                  the level asked of MPI_Init_thread (tests use it to exercise
//                                  every progress mode of the MPI communicator)
#pragma once
#include <mpi.h>

#include <functional>
#include <string>

#include "kernels/core/check.h"

namespace tfm::comm {

// MPI's thread-support levels, in increasing order.
enum class ThreadLevel { single, funneled, serialized, multiple };
const char* thread_level_name(ThreadLevel level);
ThreadLevel parse_thread_level(const std::string& name);  // throws tfm::Error naming the value

// What the environment says about how this process was started.
struct LaunchInfo {
  std::string launcher = "none";  // "none", "Open MPI", "PMIx", "PMI", "srun", "MVAPICH"
  int rank = 0;                   // as the launcher numbers it
  int size = 1;
  int local_rank = -1;  // -1 where the launcher does not say (then MPI tells)
  bool launched() const { return launcher != "none"; }
};

// Reads the launcher's variables through `getenv` (injectable so tests can fake any launcher).
// Order: TFM_NO_MPI, Open MPI (OMPI_COMM_WORLD_*), PMIx (PMIX_RANK), PMI (PMI_RANK/PMI_SIZE,
// MPICH's hydra and Slurm's PMI2), MVAPICH (MV2_COMM_WORLD_*), srun (SLURM_STEP_NUM_TASKS with
// SLURM_PROCID; a bare sbatch script sets SLURM_NTASKS but is one process, so it is not a launch).
using GetEnv = std::function<const char*(const char*)>;
LaunchInfo detect_launch(const GetEnv& getenv);
LaunchInfo detect_launch();  // from the process environment

struct WorldOptions {
  ThreadLevel thread_level = ThreadLevel::multiple;  // asked of MPI; TFM_MPI_THREAD_LEVEL wins
  bool allow_mpi = true;  // false: a world of one even under a launcher
};

class World {
 public:
  // argc/argv may be null (MPI accepts that). Throws tfm::Error if another World is alive or MPI
  // was already finalised in this process.
  explicit World(int* argc = nullptr, char*** argv = nullptr, WorldOptions options = {});
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // index among this node's processes
  int local_size() const { return local_size_; }  // processes on this node
  bool uses_mpi() const { return uses_mpi_; }
  // The level MPI provided (multiple for a world of one: there is no MPI to restrict threads).
  ThreadLevel thread_level() const { return thread_level_; }
  const LaunchInfo& launch() const { return launch_; }
  const std::string& host() const { return host_; }
  // MPI_COMM_WORLD, or MPI_COMM_NULL for a world of one.
  MPI_Comm comm() const { return uses_mpi_ ? MPI_COMM_WORLD : MPI_COMM_NULL; }
  // "rank 3 of 8 (local 1 of 4) on host n01, launched by Open MPI, MPI thread level multiple"
  std::string describe() const;

  // Ends the whole job: prints "tfm: rank R on HOST: message" to stderr and calls MPI_Abort
  // (under a launcher this takes every rank down), or exits with `exit_code` in a world of one.
  // Use it when one rank fails and the others may be waiting for it in a collective.
  [[noreturn]] void abort(int exit_code, const std::string& message) const;

  // ParallelContexts register here so the World can refuse to finalise MPI under them.
  void attach() const;
  void detach() const;

 private:
  LaunchInfo launch_;
  bool uses_mpi_ = false;
  bool owns_mpi_ = false;  // we called MPI_Init_thread, so we call MPI_Finalize
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  ThreadLevel thread_level_ = ThreadLevel::multiple;
  std::string host_;
  mutable int attached_ = 0;
};

namespace detail {
// Process-wide facts about MPI that the communicators need. MPI's initialisation and thread
// level are properties of the process, so these mirror MPI's own state rather than adding any.
bool mpi_active();               // a World initialised (or adopted) MPI and it is not finalised
ThreadLevel mpi_thread_level();  // as provided; multiple when MPI is not active
int world_rank();                // for messages; 0 when MPI is not active
const std::string& host_name();

// Serialises MPI calls when MPI provided only MPI_THREAD_SERIALIZED (a no-op otherwise). Every
// MPI call in tfm's comm code runs under one of these.
class MpiCallGuard {
 public:
  MpiCallGuard();
  ~MpiCallGuard();
  MpiCallGuard(const MpiCallGuard&) = delete;
  MpiCallGuard& operator=(const MpiCallGuard&) = delete;

 private:
  bool locked_ = false;
};
}  // namespace detail

}  // namespace tfm::comm
