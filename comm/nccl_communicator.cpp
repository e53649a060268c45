// NCCL communicator (see nccl_communicator.h). Host code only: it calls the CUDA runtime and NCCL
// APIs, so it compiles with the C++ compiler.
#include "comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "comm/abort.h"
#include "comm/mpi_communicator.h"
#include "comm/world.h"

namespace tfm::comm {

namespace {

using detail::Clock;
using detail::seconds_since;

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

// The NCCL type for `t`; u16 is only moved (as 16-bit words), never reduced.
ncclDataType_t nccl_type(DType t, bool reduces, const char* op, const GroupInfo& g) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u16:
      TFM_CHECK(!reduces, op, " on ", g.describe(), " (nccl): NCCL cannot reduce u16");
      return ncclFloat16;  // bit-exact copy: gathers and broadcasts never look at the values
  }
  fail(cat(op, " on ", g.describe(), ": unsupported dtype"));
}

}  // namespace

// One collective in flight: the event recorded after it on the communicator's stream.
struct NcclOp final : detail::PendingOp {
  NcclCommunicator::Impl* impl = nullptr;  // touched only while !done (the communicator drains
                                           // every op before it goes away)
  cudaEvent_t event = nullptr;
  std::string what;
  uint64_t seq = 0;
  Clock::time_point started;
  std::atomic<bool> done{false};

  ~NcclOp() override {
    if (event) cudaEventDestroy(event);
  }
  bool test() override;
  void wait() override {
    detail::Backoff backoff;
    while (!test()) backoff.pause();  // the watchdog enforces the deadline
  }
  void wait_stream(void* stream) override {
    if (done) return;
    cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), event, 0);
  }
};

struct NcclCommunicator::Impl {
  const GroupInfo& group;
  double timeout;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;   // NCCL's own stream
  cudaStream_t compute = nullptr;  // the caller's compute stream
  cudaEvent_t ready = nullptr;     // recorded on compute before each collective
  int* barrier_word = nullptr;     // one int on the device, all-reduced by barrier()
  uint64_t next_seq = 0;

  // The watchdog: collectives in flight, in start order (they complete in that order, on one
  // stream), polled with the deadline and NCCL's asynchronous error.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::shared_ptr<NcclOp>> inflight;
  bool stop = false;
  std::thread watchdog;

  Impl(const GroupInfo& g, double t) : group(g), timeout(t) {}

  [[noreturn]] void fatal(int exit_code, const std::string& message) {
    detail::print_fatal(message);  // only the first caller returns from this
    if (comm) {
      // ncclCommAbort stops this rank's NCCL kernels; should it block, the job still ends.
      std::thread([exit_code] {
        std::this_thread::sleep_for(std::chrono::seconds(10));
        detail::end_job(exit_code);
      }).detach();
      ncclCommAbort(comm);
    }
    detail::end_job(exit_code);
  }

  std::string nccl_error(ncclResult_t r) const {
    const char* last = ncclGetLastError(comm);
    return cat(ncclGetErrorString(r), last && *last ? cat(" (", last, ")") : std::string());
  }

  void cuda(cudaError_t e, const char* call, const std::string& what) {
    if (e != cudaSuccess)
      fatal(detail::kCommErrorExitCode, cat(call, " failed in ", what, " on ", group.describe(),
                                            " (nccl): ", cudaGetErrorString(e)));
  }

  // A non-blocking communicator may answer ncclInProgress; poll until the call settles.
  void settle(ncclResult_t r, const std::string& what, Clock::time_point started) {
    detail::Backoff backoff;
    while (r == ncclInProgress) {
      double waited = seconds_since(started);
      if (waited > timeout)
        fatal(detail::kTimeoutExitCode,
              cat("waited ", detail::format_seconds(waited), " in ", what, " on ", group.describe(),
                  " (nccl) without completion (deadline ", detail::format_seconds(timeout),
                  "): a peer is dead, stuck, or did not enter it; ending the job"));
      backoff.pause();
      ncclResult_t state = ncclSuccess;
      ncclResult_t q = ncclCommGetAsyncError(comm, &state);
      r = q != ncclSuccess ? q : state;
    }
    if (r != ncclSuccess)
      fatal(detail::kCommErrorExitCode,
            cat(what, " failed on ", group.describe(), " (nccl): ", nccl_error(r)));
  }

  Request enqueue(std::string what, const std::function<ncclResult_t(cudaStream_t)>& call) {
    auto op = std::make_shared<NcclOp>();
    op->impl = this;
    op->what = std::move(what);
    op->seq = next_seq++;
    op->started = Clock::now();
    cuda(cudaEventRecord(ready, compute), "cudaEventRecord", op->what);
    cuda(cudaStreamWaitEvent(stream, ready, 0), "cudaStreamWaitEvent", op->what);
    settle(call(stream), op->what, op->started);
    cuda(cudaEventCreateWithFlags(&op->event, cudaEventDisableTiming), "cudaEventCreate", op->what);
    cuda(cudaEventRecord(op->event, stream), "cudaEventRecord", op->what);
    {
      std::lock_guard<std::mutex> lk(mu);
      inflight.push_back(op);
    }
    cv.notify_one();
    return Request(std::move(op));
  }

  void watch() {
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      cv.wait_for(lk,
                  inflight.empty() ? std::chrono::milliseconds(100) : std::chrono::milliseconds(2));
      while (!inflight.empty()) {
        NcclOp& op = *inflight.front();
        cudaError_t e = cudaEventQuery(op.event);
        if (e == cudaErrorNotReady) break;
        if (e != cudaSuccess)
          fatal(detail::kCommErrorExitCode,
                cat(op.what, " #", op.seq, " on ", group.describe(),
                    " (nccl) failed on the device: ", cudaGetErrorString(e)));
        op.done = true;
        inflight.pop_front();
      }
      if (!inflight.empty()) {
        const NcclOp& oldest = *inflight.front();
        double waited = seconds_since(oldest.started);
        if (waited > timeout)
          fatal(detail::kTimeoutExitCode,
                cat("waited ", detail::format_seconds(waited), " in ", oldest.what,
                    " (collective #", oldest.seq, " on this communicator) on ", group.describe(),
                    " (nccl) without completion (deadline ", detail::format_seconds(timeout),
                    ", TFM_COMM_TIMEOUT): a peer is dead, stuck, or did not enter this "
                    "collective; ending the job"));
      }
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm, &state) == ncclSuccess && state != ncclSuccess &&
          state != ncclInProgress)
        fatal(detail::kCommErrorExitCode,
              cat("NCCL reported an error on ", group.describe(), ": ", nccl_error(state)));
      if (stop && inflight.empty()) return;
    }
  }
};

bool NcclOp::test() {
  if (done) return true;
  cudaError_t e = cudaEventQuery(event);
  if (e == cudaErrorNotReady) return false;
  if (e != cudaSuccess)
    impl->fatal(detail::kCommErrorExitCode,
                cat(what, " #", seq, " on ", impl->group.describe(),
                    " (nccl) failed on the device: ", cudaGetErrorString(e)));
  done = true;
  return true;
}

NcclCommunicator::NcclCommunicator(MPI_Comm bootstrap, std::string name, CommOptions options)
    : timeout_(options.timeout_seconds > 0 ? options.timeout_seconds
                                           : detail::default_timeout_seconds()) {
  if (bootstrap == MPI_COMM_NULL) {
    group_.name = std::move(name);
    group_.rank = 0;
    group_.world_ranks = {detail::world_rank()};
  } else {
    group_ = mpi_group_info(bootstrap, std::move(name));
  }
  impl_ = std::make_unique<Impl>(group_, timeout_);
  Impl& m = *impl_;
  m.compute = static_cast<cudaStream_t>(options.compute_stream);

  // The unique id: made by group rank 0, broadcast over MPI.
  ncclUniqueId id{};
  if (group_.rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    TFM_CHECK(r == ncclSuccess, "ncclGetUniqueId for ", group_.describe(), ": ",
              ncclGetErrorString(r));
  }
  if (group_.size() > 1) {
    MPI_Request req = MPI_REQUEST_NULL;
    {
      detail::MpiCallGuard guard;
      detail::mpi_check(MPI_Ibcast(&id, int(sizeof id), MPI_BYTE, 0, bootstrap, &req), "MPI_Ibcast",
                        cat(" of the NCCL unique id on ", group_.describe()));
    }
    detail::mpi_wait_or_abort(&req, timeout_, "the NCCL unique-id broadcast", group_);
  }

  // Non-blocking creation, so the deadline covers it too.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  auto started = Clock::now();
  ncclResult_t r = ncclCommInitRankConfig(&m.comm, group_.size(), id, group_.rank, &config);
  m.settle(r, cat("ncclCommInitRankConfig (", group_.size(), " ranks)"), started);

  int least = 0, greatest = 0;
  m.cuda(cudaDeviceGetStreamPriorityRange(&least, &greatest), "cudaDeviceGetStreamPriorityRange",
         "set-up");
  // Highest priority, so communication kernels start as soon as their inputs are ready.
  m.cuda(cudaStreamCreateWithPriority(&m.stream, cudaStreamNonBlocking, greatest),
         "cudaStreamCreateWithPriority", "set-up");
  m.cuda(cudaEventCreateWithFlags(&m.ready, cudaEventDisableTiming), "cudaEventCreate", "set-up");
  m.cuda(cudaMalloc(reinterpret_cast<void**>(&m.barrier_word), sizeof(int)), "cudaMalloc",
         "set-up");
  m.cuda(cudaMemset(m.barrier_word, 0, sizeof(int)), "cudaMemset", "set-up");
  m.watchdog = std::thread([&m] { m.watch(); });
}

NcclCommunicator::~NcclCommunicator() {
  Impl& m = *impl_;
  {
    // The watchdog keeps enforcing the deadline while the collectives in flight drain.
    std::unique_lock<std::mutex> lk(m.mu);
    m.stop = true;
  }
  m.cv.notify_all();
  if (m.watchdog.joinable()) m.watchdog.join();
  if (m.comm) {
    auto started = Clock::now();
    ncclResult_t r = ncclCommFinalize(m.comm);
    m.settle(r, "ncclCommFinalize", started);
    ncclCommDestroy(m.comm);
  }
  if (m.barrier_word) cudaFree(m.barrier_word);
  if (m.ready) cudaEventDestroy(m.ready);
  if (m.stream) cudaStreamDestroy(m.stream);
}

void* NcclCommunicator::stream() const { return impl_->stream; }

Request NcclCommunicator::all_reduce_async(const Tensor& inout, ReduceOp op) {
  const char* name = "all_reduce";
  detail::check_tensor(*this, name, "inout", inout);
  ncclDataType_t type = nccl_type(inout.dtype, true, name, group_);
  size_t count = size_t(inout.numel());
  void* data = inout.data;
  ncclComm_t comm = impl_->comm;
  return impl_->enqueue(detail::describe_op(name, inout, reduce_op_name(op)), [=](cudaStream_t s) {
    return ncclAllReduce(data, data, count, type, nccl_op(op), comm, s);
  });
}

Request NcclCommunicator::reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) {
  const char* name = "reduce_scatter";
  detail::check_reduce_scatter(*this, in, out);  // NCCL's in-place form is ours
  ncclDataType_t type = nccl_type(in.dtype, true, name, group_);
  size_t count = size_t(out.numel());
  const void* src = in.data;
  void* dst = out.data;
  ncclComm_t comm = impl_->comm;
  return impl_->enqueue(detail::describe_op(name, in, reduce_op_name(op)), [=](cudaStream_t s) {
    return ncclReduceScatter(src, dst, count, type, nccl_op(op), comm, s);
  });
}

Request NcclCommunicator::all_gather_async(const Tensor& in, const Tensor& out) {
  const char* name = "all_gather";
  detail::check_all_gather(*this, in, out);
  ncclDataType_t type = nccl_type(in.dtype, false, name, group_);
  size_t count = size_t(in.numel());
  const void* src = in.data;
  void* dst = out.data;
  ncclComm_t comm = impl_->comm;
  return impl_->enqueue(detail::describe_op(name, in), [=](cudaStream_t s) {
    return ncclAllGather(src, dst, count, type, comm, s);
  });
}

Request NcclCommunicator::broadcast_async(const Tensor& inout, int root) {
  const char* name = "broadcast";
  detail::check_tensor(*this, name, "inout", inout);
  detail::check_root(*this, name, root);
  ncclDataType_t type = nccl_type(inout.dtype, false, name, group_);
  size_t count = size_t(inout.numel());
  void* data = inout.data;
  ncclComm_t comm = impl_->comm;
  std::string root_text = cat("root ", root);
  return impl_->enqueue(detail::describe_op(name, inout, root_text.c_str()), [=](cudaStream_t s) {
    return ncclBroadcast(data, data, count, type, root, comm, s);
  });
}

Request NcclCommunicator::barrier_async() {
  int* word = impl_->barrier_word;
  ncclComm_t comm = impl_->comm;
  return impl_->enqueue("barrier()", [=](cudaStream_t s) {
    return ncclAllReduce(word, word, 1, ncclInt32, ncclSum, comm, s);
  });
}

std::string nccl_version() {
  int v = 0;
  ncclGetVersion(&v);
  // NCCL ≥ 2.9 encodes major·10000 + minor·100 + patch.
  return cat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

}  // namespace tfm::comm
