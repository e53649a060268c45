#include "comm/mpi_communicator.h"

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/abort.h"
#include "comm/world.h"

namespace tfm::comm {

namespace detail {

namespace {

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, size_t(len));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

// The MPI type that moves (and, when `reduces`, does arithmetic on) elements of `t`.
MPI_Datatype mpi_type(DType t, bool reduces, const char* op, const GroupInfo& g) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u16: return MPI_UINT16_T;
    case DType::bf16:
    case DType::f16:
      TFM_CHECK(!reduces, op, " on ", g.describe(), " (mpi): MPI has no ", dtype_name(t),
                " arithmetic; reduce ", dtype_name(t), " with NCCL or in f32");
      return MPI_UINT16_T;  // moved as raw 16-bit words
  }
  fail(cat(op, " on ", g.describe(), ": unsupported dtype"));
}

int mpi_count(const Tensor& t, const char* op, const GroupInfo& g) {
  TFM_CHECK(t.numel() <= INT_MAX, op, " on ", g.describe(), " (mpi): ", t.numel(),
            " elements exceed MPI's int count; split the buffer into buckets");
  return int(t.numel());
}

}  // namespace

void mpi_check(int code, const char* call, const std::string& where) {
  if (code != MPI_SUCCESS) fail(cat(call, " failed", where, ": ", mpi_error_text(code)));
}

void mpi_wait_or_abort(MPI_Request* request, double timeout_seconds, const std::string& what,
                       const GroupInfo& group) {
  auto start = Clock::now();
  Backoff backoff;
  for (;;) {
    int flag = 0, rc;
    {
      MpiCallGuard guard;
      rc = MPI_Test(request, &flag, MPI_STATUS_IGNORE);
    }
    if (rc != MPI_SUCCESS)
      abort_job(kCommErrorExitCode, cat("MPI_Test failed in ", what, " on ", group.describe(), ": ",
                                        mpi_error_text(rc)));
    if (flag) return;
    double waited = seconds_since(start);
    if (waited > timeout_seconds)
      abort_job(kTimeoutExitCode,
                cat("waited ", format_seconds(waited), " in ", what, " on ", group.describe(),
                    " without completion (deadline ", format_seconds(timeout_seconds),
                    "): a peer is dead, stuck, or did not enter this collective; ending the job"));
    backoff.pause();
  }
}

// One collective: its MPI arguments, how to run it blocking or post it non-blocking, and its
// state.
struct MpiOp final : PendingOp {
  enum class Kind { all_reduce, reduce_scatter, all_gather, broadcast, barrier };
  Kind kind = Kind::barrier;
  const void* send = nullptr;  // MPI_IN_PLACE for the in-place forms
  void* recv = nullptr;
  int count = 0;  // per rank: the whole buffer (all_reduce, broadcast) or one block
  MPI_Datatype type = MPI_BYTE;
  MPI_Op op = MPI_SUM;
  int root = 0;
  // reduce_scatter into this rank's own block of the input: MPI's in-place form would overwrite
  // the input's first block, so the result lands in scratch and is copied to copy_to afterwards.
  std::vector<char> scratch;
  void* copy_to = nullptr;

  MpiEngine* engine = nullptr;
  std::string what;  // "all_reduce(sum, f32 x 1000)"
  uint64_t seq = 0;  // collectives started on this communicator before this one
  MPI_Request request = MPI_REQUEST_NULL;
  Clock::time_point started;
  std::atomic<bool> done{false};

  const char* call(bool blocking) const {
    switch (kind) {
      case Kind::all_reduce: return blocking ? "MPI_Allreduce" : "MPI_Iallreduce";
      case Kind::reduce_scatter:
        return blocking ? "MPI_Reduce_scatter_block" : "MPI_Ireduce_scatter_block";
      case Kind::all_gather: return blocking ? "MPI_Allgather" : "MPI_Iallgather";
      case Kind::broadcast: return blocking ? "MPI_Bcast" : "MPI_Ibcast";
      case Kind::barrier: return blocking ? "MPI_Barrier" : "MPI_Ibarrier";
    }
    return "?";
  }
  int run(MPI_Comm c) {
    switch (kind) {
      case Kind::all_reduce: return MPI_Allreduce(send, recv, count, type, op, c);
      case Kind::reduce_scatter: return MPI_Reduce_scatter_block(send, recv, count, type, op, c);
      case Kind::all_gather: return MPI_Allgather(send, count, type, recv, count, type, c);
      case Kind::broadcast: return MPI_Bcast(recv, count, type, root, c);
      case Kind::barrier: return MPI_Barrier(c);
    }
    return MPI_ERR_OTHER;
  }
  int post(MPI_Comm c) {
    switch (kind) {
      case Kind::all_reduce: return MPI_Iallreduce(send, recv, count, type, op, c, &request);
      case Kind::reduce_scatter:
        return MPI_Ireduce_scatter_block(send, recv, count, type, op, c, &request);
      case Kind::all_gather:
        return MPI_Iallgather(send, count, type, recv, count, type, c, &request);
      case Kind::broadcast: return MPI_Ibcast(recv, count, type, root, c, &request);
      case Kind::barrier: return MPI_Ibarrier(c, &request);
    }
    return MPI_ERR_OTHER;
  }
  void finish() {
    if (copy_to) std::memcpy(copy_to, scratch.data(), scratch.size());
  }

  bool test() override;
  void wait() override;
};

// Runs the collectives of one MPI communicator in start order (see the progress modes in
// mpi_communicator.h).
class MpiEngine {
 public:
  MpiEngine(MPI_Comm comm, const GroupInfo& group, double timeout, Progress progress)
      : comm_(comm), group_(group), timeout_(timeout), progress_(progress) {
    if (progress_ == Progress::thread) {
      worker_ = std::thread([this] { thread_loop(); });
      watchdog_ = std::thread([this] { watchdog_loop(); });
    } else if (progress_ == Progress::polling) {
      worker_ = std::thread([this] { polling_loop(); });
    }
  }

  ~MpiEngine() {
    if (progress_ == Progress::caller) {
      Backoff backoff;
      while (!inflight_.empty()) {
        if (!poll(inflight_)) {
          check_deadline(*inflight_.front());
          backoff.pause();
        }
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    worker_.join();  // the worker drains everything started before it stops
    if (watchdog_.joinable()) {
      {
        // Taking the lock orders this notify after the watchdog's last look at stop_, so it
        // cannot miss it and sleep on.
        std::lock_guard<std::mutex> lk(mu_);
      }
      watchdog_cv_.notify_all();
      watchdog_.join();
    }
  }

  // Starts `op` (non-blocking form).
  Request start(std::shared_ptr<MpiOp> op) {
    op->engine = this;
    if (progress_ == Progress::caller) {
      require_main_thread(*op);
      op->seq = next_seq_++;
      post(*op);
      inflight_.push_back(op);
    } else {
      {
        std::lock_guard<std::mutex> lk(mu_);
        op->seq = next_seq_++;
        queue_.push_back(op);
      }
      work_cv_.notify_one();
    }
    return Request(std::move(op));
  }

  // Runs `op` to completion (blocking form): on this thread when it is next in line, otherwise
  // after the collectives started before it.
  void run_blocking(std::shared_ptr<MpiOp> op) {
    if (progress_ != Progress::thread) {
      start(op).wait();
      return;
    }
    op->engine = this;
    bool here = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      op->seq = next_seq_++;
      if (queue_.empty() && !running_) {
        running_ = op;
        op->started = Clock::now();
        here = true;
      } else {
        queue_.push_back(op);
      }
    }
    if (here) {
      watchdog_cv_.notify_one();
      execute(*op);
    } else {
      work_cv_.notify_one();
      wait(*op);
    }
  }

  bool test(MpiOp& op) {
    if (op.done) return true;
    if (progress_ == Progress::caller) {
      if (!poll(inflight_) && !inflight_.empty()) check_deadline(*inflight_.front());
    }
    return op.done;
  }

  void wait(MpiOp& op) {
    if (op.done) return;
    if (progress_ != Progress::caller) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return op.done.load(); });
      return;
    }
    Backoff backoff;
    while (!op.done) {
      if (poll(inflight_)) {
        backoff.reset();
      } else {
        if (!inflight_.empty()) check_deadline(*inflight_.front());
        backoff.pause();
      }
    }
  }

 private:
  // ---- thread mode: blocking MPI calls, one at a time, deadline kept by the watchdog --------
  void thread_loop() {
    for (;;) {
      std::shared_ptr<MpiOp> op;
      {
        std::unique_lock<std::mutex> lk(mu_);
        work_cv_.wait(lk, [&] { return !running_ && (!queue_.empty() || stop_); });
        if (queue_.empty()) return;  // stopping, and everything started has run
        op = queue_.front();
        queue_.pop_front();
        running_ = op;
        op->started = Clock::now();
      }
      watchdog_cv_.notify_one();
      execute(*op);
    }
  }

  void execute(MpiOp& op) {
    int rc = op.run(comm_);
    if (rc != MPI_SUCCESS)
      abort_job(kCommErrorExitCode, cat(op.call(true), " failed in ", op.what, " #", op.seq,
                                        " on ", group_.describe(), ": ", mpi_error_text(rc)));
    op.finish();
    {
      std::lock_guard<std::mutex> lk(mu_);
      running_ = nullptr;
      op.done = true;
    }
    done_cv_.notify_all();
    work_cv_.notify_all();
  }

  void watchdog_loop() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (!running_) {
        if (stop_ && queue_.empty()) return;
        watchdog_cv_.wait(lk);
        continue;
      }
      std::shared_ptr<MpiOp> op = running_;
      double waited = seconds_since(op->started);
      if (waited > timeout_) {
        lk.unlock();
        deadline_passed(*op, waited);
      }
      watchdog_cv_.wait_for(lk, std::chrono::duration<double>(timeout_ - waited + 0.001));
    }
  }

  // ---- polling mode: non-blocking MPI calls posted and tested by the worker under the lock --
  void polling_loop() {
    std::deque<std::shared_ptr<MpiOp>> inflight;
    Backoff backoff;
    for (;;) {
      std::deque<std::shared_ptr<MpiOp>> fresh;
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (inflight.empty()) work_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty() && inflight.empty()) return;
        fresh.swap(queue_);
      }
      for (auto& op : fresh) {
        post(*op);
        inflight.push_back(std::move(op));
      }
      bool progressed = poll(inflight) > 0;
      if (progressed || !fresh.empty()) {
        backoff.reset();
      } else if (!inflight.empty()) {
        check_deadline(*inflight.front());
        backoff.pause();
      }
    }
  }

  // ---- polling and caller modes ------------------------------------------------------------
  void require_main_thread(const MpiOp& op) {
    int is_main = 1;
    MPI_Is_thread_main(&is_main);
    TFM_CHECK(is_main, op.what, " on ", group_.describe(),
              ": with MPI thread level below serialized (caller progress), collectives must be "
              "started from MPI's main thread");
  }

  void post(MpiOp& op) {
    op.started = Clock::now();
    int rc;
    {
      MpiCallGuard guard;
      rc = op.post(comm_);
    }
    if (rc != MPI_SUCCESS)
      abort_job(kCommErrorExitCode, cat(op.call(false), " failed in ", op.what, " #", op.seq,
                                        " on ", group_.describe(), ": ", mpi_error_text(rc)));
  }

  // Tests every collective in flight; completes those that finished. Returns how many did.
  int poll(std::deque<std::shared_ptr<MpiOp>>& inflight) {
    int completed = 0;
    for (auto it = inflight.begin(); it != inflight.end();) {
      MpiOp& op = **it;
      int flag = 0, rc;
      {
        MpiCallGuard guard;
        rc = MPI_Test(&op.request, &flag, MPI_STATUS_IGNORE);
      }
      if (rc != MPI_SUCCESS)
        abort_job(kCommErrorExitCode, cat("MPI_Test failed in ", op.what, " #", op.seq, " on ",
                                          group_.describe(), ": ", mpi_error_text(rc)));
      if (!flag) {
        ++it;
        continue;
      }
      op.finish();
      {
        std::lock_guard<std::mutex> lk(mu_);
        op.done = true;
      }
      done_cv_.notify_all();
      it = inflight.erase(it);
      ++completed;
    }
    return completed;
  }

  void check_deadline(const MpiOp& oldest) {
    double waited = seconds_since(oldest.started);
    if (waited > timeout_) deadline_passed(oldest, waited);
  }

  [[noreturn]] void deadline_passed(const MpiOp& op, double waited) {
    abort_job(kTimeoutExitCode,
              cat("waited ", format_seconds(waited), " in ", op.what, " (collective #", op.seq,
                  " on this communicator) on ", group_.describe(),
                  " (mpi) without completion (deadline ", format_seconds(timeout_),
                  ", TFM_COMM_TIMEOUT): a peer is dead, stuck, or did not enter this "
                  "collective; ending the job"));
  }

  MPI_Comm comm_;
  const GroupInfo& group_;
  double timeout_;
  Progress progress_;
  uint64_t next_seq_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_;      // the worker waits here for work
  std::condition_variable done_cv_;      // callers of wait() wait here
  std::condition_variable watchdog_cv_;  // thread mode: the watchdog waits here
  std::deque<std::shared_ptr<MpiOp>> queue_;  // started, not yet run or posted (start order)
  std::shared_ptr<MpiOp> running_;            // thread mode: the collective under way
  bool stop_ = false;
  std::thread worker_;
  std::thread watchdog_;

  // caller mode: posted and not yet complete, in start order (MPI's main thread only)
  std::deque<std::shared_ptr<MpiOp>> inflight_;
};

bool MpiOp::test() { return done || engine->test(*this); }
void MpiOp::wait() {
  if (!done) engine->wait(*this);
}

}  // namespace detail

GroupInfo mpi_group_info(MPI_Comm comm, std::string name) {
  GroupInfo g;
  g.name = std::move(name);
  detail::MpiCallGuard guard;
  int size = 0;
  MPI_Comm_rank(comm, &g.rank);
  MPI_Comm_size(comm, &size);
  MPI_Group group, world;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> ranks(size_t(size), 0);
  for (int i = 0; i < size; ++i) ranks[size_t(i)] = i;
  g.world_ranks.assign(size_t(size), 0);
  MPI_Group_translate_ranks(group, size, ranks.data(), world, g.world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  return g;
}

const char* progress_name(Progress p) {
  switch (p) {
    case Progress::thread: return "thread";
    case Progress::polling: return "polling";
    case Progress::caller: return "caller";
  }
  return "?";
}

namespace {
// The least MPI thread level each mode needs.
ThreadLevel needs(Progress p) {
  switch (p) {
    case Progress::thread: return ThreadLevel::multiple;
    case Progress::polling: return ThreadLevel::serialized;
    case Progress::caller: return ThreadLevel::single;
  }
  return ThreadLevel::multiple;
}
}  // namespace

Progress default_progress() {
  ThreadLevel level = detail::mpi_thread_level();
  if (const char* v = std::getenv("TFM_COMM_PROGRESS"); v && *v) {
    for (Progress p : {Progress::thread, Progress::polling, Progress::caller}) {
      if (std::string(v) != progress_name(p)) continue;
      TFM_CHECK(level >= needs(p), "TFM_COMM_PROGRESS=", v, " needs MPI thread level ",
                thread_level_name(needs(p)), ", but MPI provided ", thread_level_name(level));
      return p;
    }
    fail(cat("TFM_COMM_PROGRESS='", v, "' (expected thread, polling or caller)"));
  }
  if (level >= ThreadLevel::multiple) return Progress::thread;
  if (level >= ThreadLevel::serialized) return Progress::polling;
  return Progress::caller;
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options)
    : MpiCommunicator(comm, std::move(name), options, default_progress()) {}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options,
                                 Progress progress)
    : timeout_(options.timeout_seconds > 0 ? options.timeout_seconds
                                           : detail::default_timeout_seconds()),
      progress_(progress) {
  TFM_CHECK(detail::mpi_active(), "MpiCommunicator '", name,
            "': MPI is not initialised (create a tfm::comm::World under a launcher first)");
  TFM_CHECK(comm != MPI_COMM_NULL, "MpiCommunicator '", name, "': MPI_COMM_NULL given");
  TFM_CHECK(detail::mpi_thread_level() >= needs(progress), "MpiCommunicator '", name, "': ",
            progress_name(progress), " progress needs MPI thread level ",
            thread_level_name(needs(progress)), ", but MPI provided ",
            thread_level_name(detail::mpi_thread_level()));
  group_ = mpi_group_info(comm, name);
  MPI_Comm dup = MPI_COMM_NULL;
  {
    detail::MpiCallGuard guard;
    detail::mpi_check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup", cat(" for ", group_.describe()));
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  }
  comm_ = dup;
  engine_ = std::make_unique<detail::MpiEngine>(comm_, group_, timeout_, progress_);
}

MpiCommunicator::~MpiCommunicator() {
  engine_.reset();  // drains every collective in flight
  detail::MpiCallGuard guard;
  if (detail::mpi_active()) MPI_Comm_free(&comm_);
}

namespace {
std::shared_ptr<detail::MpiOp> new_op(detail::MpiOp::Kind kind, std::string what) {
  auto op = std::make_shared<detail::MpiOp>();
  op->kind = kind;
  op->what = std::move(what);
  return op;
}
}  // namespace

std::shared_ptr<detail::MpiOp> MpiCommunicator::make_all_reduce(const Tensor& inout,
                                                                ReduceOp op) {
  const char* name = "all_reduce";
  detail::check_tensor(*this, name, "inout", inout);
  auto p = new_op(detail::MpiOp::Kind::all_reduce,
                  detail::describe_op(name, inout, reduce_op_name(op)));
  p->type = detail::mpi_type(inout.dtype, true, name, group_);
  p->count = detail::mpi_count(inout, name, group_);
  p->op = detail::mpi_op(op);
  p->send = MPI_IN_PLACE;
  p->recv = inout.data;
  return p;
}

std::shared_ptr<detail::MpiOp> MpiCommunicator::make_reduce_scatter(const Tensor& in,
                                                                    const Tensor& out,
                                                                    ReduceOp op) {
  const char* name = "reduce_scatter";
  detail::Overlap overlap = detail::check_reduce_scatter(*this, in, out);
  auto p = new_op(detail::MpiOp::Kind::reduce_scatter,
                  detail::describe_op(name, in, reduce_op_name(op)));
  p->type = detail::mpi_type(in.dtype, true, name, group_);
  detail::mpi_count(in, name, group_);
  p->count = int(out.numel());
  p->op = detail::mpi_op(op);
  p->send = in.data;
  p->recv = out.data;
  if (overlap == detail::Overlap::in_place) {
    p->scratch.resize(out.bytes());
    p->recv = p->scratch.data();
    p->copy_to = out.data;
  }
  return p;
}

std::shared_ptr<detail::MpiOp> MpiCommunicator::make_all_gather(const Tensor& in,
                                                                const Tensor& out) {
  const char* name = "all_gather";
  detail::Overlap overlap = detail::check_all_gather(*this, in, out);
  auto p = new_op(detail::MpiOp::Kind::all_gather, detail::describe_op(name, in));
  p->type = detail::mpi_type(in.dtype, false, name, group_);
  detail::mpi_count(out, name, group_);
  p->count = int(in.numel());
  // In place, MPI takes this rank's block from the output: exactly where `in` already is.
  p->send = overlap == detail::Overlap::in_place ? MPI_IN_PLACE : in.data;
  p->recv = out.data;
  return p;
}

std::shared_ptr<detail::MpiOp> MpiCommunicator::make_broadcast(const Tensor& inout, int root) {
  const char* name = "broadcast";
  detail::check_tensor(*this, name, "inout", inout);
  detail::check_root(*this, name, root);
  std::string root_text = cat("root ", root);
  auto p = new_op(detail::MpiOp::Kind::broadcast,
                  detail::describe_op(name, inout, root_text.c_str()));
  p->type = detail::mpi_type(inout.dtype, false, name, group_);
  p->count = detail::mpi_count(inout, name, group_);
  p->recv = inout.data;
  p->root = root;
  return p;
}

std::shared_ptr<detail::MpiOp> MpiCommunicator::make_barrier() {
  return new_op(detail::MpiOp::Kind::barrier, "barrier()");
}

Request MpiCommunicator::all_reduce_async(const Tensor& inout, ReduceOp op) {
  return engine_->start(make_all_reduce(inout, op));
}
Request MpiCommunicator::reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) {
  return engine_->start(make_reduce_scatter(in, out, op));
}
Request MpiCommunicator::all_gather_async(const Tensor& in, const Tensor& out) {
  return engine_->start(make_all_gather(in, out));
}
Request MpiCommunicator::broadcast_async(const Tensor& inout, int root) {
  return engine_->start(make_broadcast(inout, root));
}
Request MpiCommunicator::barrier_async() { return engine_->start(make_barrier()); }

void MpiCommunicator::all_reduce(const Tensor& inout, ReduceOp op) {
  engine_->run_blocking(make_all_reduce(inout, op));
}
void MpiCommunicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  engine_->run_blocking(make_reduce_scatter(in, out, op));
}
void MpiCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  engine_->run_blocking(make_all_gather(in, out));
}
void MpiCommunicator::broadcast(const Tensor& inout, int root) {
  engine_->run_blocking(make_broadcast(inout, root));
}
void MpiCommunicator::barrier() { engine_->run_blocking(make_barrier()); }

}  // namespace tfm::comm
