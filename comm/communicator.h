// Communicator: the collectives the trainer and the tensor-parallel layers need, on Tensors, over
// one group of ranks. One interface, three implementations:
//   MpiCommunicator   host memory, over an MPI communicator (comm/mpi_communicator.h)
//   NcclCommunicator  device memory, NCCL on its own CUDA stream (comm/nccl_communicator.h)
//   SelfCommunicator  a group of one: no communication, copies where the semantics need them
// make_communicator() (comm/factory.h) picks the right one for a group and a device.
//
// Every collective exists blocking (all_reduce) and non-blocking (all_reduce_async, which returns
// a Request). Non-blocking collectives on one communicator run in the order they were started,
// must be started in the same order on every rank of the group, and may be waited on in any
// order. Several may be in flight at once; that is how gradient buckets are reduced while
// backward continues. A buffer handed to a collective must stay alive and untouched until its
// Request completes.
//
// Shapes (n = size(), blocks in group-rank order, counts are element counts):
//   all_reduce(x, op)          x [N] on every rank → x = op over ranks of x
//   reduce_scatter(in, out)    in [n·B], out [B]   → out = op over ranks of in[rank·B, (rank+1)·B)
//   all_gather(in, out)        in [B], out [n·B]   → out[r·B, (r+1)·B) = in of rank r
//   broadcast(x, root)         x [N]               → x = x of root
//   barrier()                  returns once every rank has entered it
// Tensors are taken as flat, contiguous element ranges (their shape only gives the count).
// In place: reduce_scatter's out may be in's own block (out = in + rank·B) and all_gather's in
// may be out's own block (in = out + rank·B), as in NCCL; any other overlap is an error.
//
// Deadlines: every collective that has not completed timeout_seconds() after it started ends the
// whole job with a message naming the operation, this rank, the group and its ranks (see
// comm/abort.h), never a hang.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kernels/core/tensor.h"

namespace tfm::comm {

enum class ReduceOp { sum, max, min };
const char* reduce_op_name(ReduceOp op);

// The ranks a communicator spans. `name` is the group's role ("world", "dp", "tp") and appears
// in every message about it.
struct GroupInfo {
  std::string name;
  int rank = 0;                  // this process's rank in the group
  std::vector<int> world_ranks;  // [group rank] → world rank
  int size() const { return int(world_ranks.size()); }
  // "dp group {0, 2, 4}" (long lists are abbreviated, with the count)
  std::string describe() const;
};

struct CommOptions {
  double timeout_seconds = 0;      // 0: TFM_COMM_TIMEOUT, else 300 s
  void* compute_stream = nullptr;  // cuda: the stream that produces and consumes the buffers
                                   // (cudaStream_t; null is the legacy default stream)
};

namespace detail {
// What a Request holds: an operation that completes on its own time.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual bool test() = 0;  // non-blocking: true once complete
  virtual void wait() = 0;  // blocks until complete
  // Orders `stream` after the operation without blocking the host (device communicators);
  // host communicators simply wait.
  virtual void wait_stream(void* stream) {
    (void)stream;
    wait();
  }
};
}  // namespace detail

// The handle of a non-blocking collective. Move-only. A default-constructed Request is complete.
// Destroying (or assigning over) a pending Request waits for it, since the buffers it writes may
// be freed right after.
class Request {
 public:
  Request() = default;
  explicit Request(std::shared_ptr<detail::PendingOp> op) : op_(std::move(op)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  // Blocks until the collective has completed: on host communicators the buffers hold the
  // result; on NCCL the host has seen the device finish it. Idempotent.
  void wait();
  // Non-blocking: true once complete (then wait() returns at once).
  bool test();
  // Device communicators: makes `stream` (a cudaStream_t) wait for the collective on the device,
  // without blocking the host; the deadline still applies (the NCCL watchdog enforces it).
  // Host communicators: the same as wait().
  void wait_stream(void* stream);
  bool pending() const { return op_ != nullptr; }

 private:
  std::shared_ptr<detail::PendingOp> op_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual const GroupInfo& group() const = 0;
  virtual Device device() const = 0;        // where its buffers live
  virtual const char* backend() const = 0;  // "mpi", "nccl", "self"
  virtual double timeout_seconds() const = 0;
  int rank() const { return group().rank; }
  int size() const { return group().size(); }
  const std::string& name() const { return group().name; }

  // Non-blocking collectives (see the header comment for shapes and ordering).
  virtual Request all_reduce_async(const Tensor& inout, ReduceOp op = ReduceOp::sum) = 0;
  virtual Request reduce_scatter_async(const Tensor& in, const Tensor& out,
                                       ReduceOp op = ReduceOp::sum) = 0;
  virtual Request all_gather_async(const Tensor& in, const Tensor& out) = 0;
  virtual Request broadcast_async(const Tensor& inout, int root) = 0;
  virtual Request barrier_async() = 0;

  // Blocking forms. By default start, then wait; an implementation may do better (the MPI
  // communicator runs MPI's blocking collective on the calling thread when nothing is queued).
  virtual void all_reduce(const Tensor& inout, ReduceOp op = ReduceOp::sum) {
    all_reduce_async(inout, op).wait();
  }
  virtual void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op = ReduceOp::sum) {
    reduce_scatter_async(in, out, op).wait();
  }
  virtual void all_gather(const Tensor& in, const Tensor& out) {
    all_gather_async(in, out).wait();
  }
  virtual void broadcast(const Tensor& inout, int root) { broadcast_async(inout, root).wait(); }
  virtual void barrier() { barrier_async().wait(); }
};

namespace detail {
// Argument checks shared by the implementations; each throws tfm::Error naming the operation,
// the argument and the group. `reduces` says whether the dtype must support arithmetic here.
enum class Overlap { none, in_place };
void check_tensor(const Communicator& c, const char* op, const char* arg, const Tensor& t);
Overlap check_reduce_scatter(const Communicator& c, const Tensor& in, const Tensor& out);
Overlap check_all_gather(const Communicator& c, const Tensor& in, const Tensor& out);
void check_root(const Communicator& c, const char* op, int root);
// "all_reduce(sum, f32 x 1000)"
std::string describe_op(const char* op, const Tensor& t, const char* extra = nullptr);
}  // namespace detail

}  // namespace tfm::comm
