// MpiCommunicator: collectives on host memory over an MPI communicator.
//
// Who drives MPI decides how well a non-blocking collective overlaps with computation: MPI
// implementations such as Open MPI move a collective forward only while some thread is inside
// MPI. Three progress modes, chosen from the thread level MPI provided:
//
//   thread   (MPI_THREAD_MULTIPLE; the default): each communicator has a communication thread
//            that runs the started collectives one after another, in start order, with MPI's
//            blocking calls (MPI_Allreduce, MPI_Reduce_scatter_block, MPI_Allgather, MPI_Bcast,
//            MPI_Barrier), whose tuned algorithms reach about twice the bandwidth of their
//            non-blocking twins on large buffers (bench/RESULTS.md, Communication). A gradient
//            bucket thus moves while the caller runs backward. A blocking call (all_reduce(),
//            not all_reduce_async()) made while nothing is queued runs on the calling thread
//            itself, saving the hand-off. A watchdog thread enforces the deadline of the
//            collective being run.
//   polling  (MPI_THREAD_SERIALIZED): the communication thread posts MPI-3 non-blocking
//            collectives (MPI_Iallreduce ...) and polls them with MPI_Test, every MPI call under
//            one process-wide lock (detail::MpiCallGuard); a blocking call there could hold the
//            lock while a peer needs this process to progress another communicator.
//   caller   (MPI_THREAD_FUNNELED or SINGLE): the calling thread, which must be MPI's main
//            thread, posts the non-blocking collective; it progresses only inside
//            Request::test() and Request::wait(), so overlap needs the caller to test() now and
//            then.
// TFM_COMM_PROGRESS=thread|polling|caller overrides the choice where MPI's level allows it.
//
// Deadlines: past timeout_seconds() the collective's rank prints how long it waited in which
// collective on which group and calls MPI_Abort. MPI errors on the communicator are returned to
// us (MPI_ERRORS_RETURN) and end the job the same way, with the MPI error text.
#pragma once
#include <mpi.h>

#include <memory>

#include "comm/communicator.h"

namespace tfm::comm {

namespace detail {
class MpiEngine;
struct MpiOp;
}  // namespace detail

// The group an MPI communicator spans, named `name`, with world ranks from MPI_COMM_WORLD.
GroupInfo mpi_group_info(MPI_Comm comm, std::string name);

enum class Progress { thread, polling, caller };
const char* progress_name(Progress p);
// The best mode MPI's thread level allows, or TFM_COMM_PROGRESS (an error if MPI's level does
// not allow it).
Progress default_progress();

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm` (collective over its ranks) so its traffic never mixes with anyone
  // else's. `name` is the group's role ("world", "dp", "tp").
  MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options = {});
  MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options, Progress progress);
  // Waits for every collective still in flight, then frees the duplicate.
  ~MpiCommunicator() override;

  const GroupInfo& group() const override { return group_; }
  Device device() const override { return Device::cpu; }
  const char* backend() const override { return "mpi"; }
  double timeout_seconds() const override { return timeout_; }
  Progress progress() const { return progress_; }

  Request all_reduce_async(const Tensor& inout, ReduceOp op = ReduceOp::sum) override;
  Request reduce_scatter_async(const Tensor& in, const Tensor& out,
                               ReduceOp op = ReduceOp::sum) override;
  Request all_gather_async(const Tensor& in, const Tensor& out) override;
  Request broadcast_async(const Tensor& inout, int root) override;
  Request barrier_async() override;

  void all_reduce(const Tensor& inout, ReduceOp op = ReduceOp::sum) override;
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::sum) override;
  void all_gather(const Tensor& in, const Tensor& out) override;
  void broadcast(const Tensor& inout, int root) override;
  void barrier() override;

 private:
  std::shared_ptr<detail::MpiOp> make_all_reduce(const Tensor& inout, ReduceOp op);
  std::shared_ptr<detail::MpiOp> make_reduce_scatter(const Tensor& in, const Tensor& out,
                                                     ReduceOp op);
  std::shared_ptr<detail::MpiOp> make_all_gather(const Tensor& in, const Tensor& out);
  std::shared_ptr<detail::MpiOp> make_broadcast(const Tensor& inout, int root);
  std::shared_ptr<detail::MpiOp> make_barrier();

  GroupInfo group_;
  MPI_Comm comm_ = MPI_COMM_NULL;  // our duplicate, errors returned rather than fatal
  double timeout_;
  Progress progress_;
  std::unique_ptr<detail::MpiEngine> engine_;
};

namespace detail {
// Waits for one MPI request with a deadline (used to bootstrap NCCL): past `timeout_seconds`
// the job ends with "waited N s in <what> on <group>".
void mpi_wait_or_abort(MPI_Request* request, double timeout_seconds, const std::string& what,
                       const GroupInfo& group);
// Turns an MPI error code into a tfm::Error naming the call (for start-up paths, where every
// rank fails the same way).
void mpi_check(int code, const char* call, const std::string& where);
}  // namespace detail

}  // namespace tfm::comm
