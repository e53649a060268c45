// GradientReducer: data-parallel gradient reduction in buckets that overlaps with backward, with a
// ZeRO-1 mode in which each rank ends up owning (and updating) one block of every bucket.
//
// Layout. Gradients live in one flat, contiguous buffer (f32 or f64, on the communicator's
// device); each parameter is an element range of it (ParamRange, in registration order: offsets
// increasing, ranges non-overlapping, gaps allowed). The buffer's element count must be a
// multiple of comm.size() (pad it), so every bucket can be split evenly by a reduce-scatter.
//
// Buckets are contiguous element ranges that cover the whole buffer, cut from its END towards
// its start, because backward produces the last-registered parameters' gradients first. Each
// holds about bucket_bytes (rounded to a multiple of comm.size() elements, at least one element
// per rank); bucket 0 ends at the end of the buffer, and the last bucket (which starts at
// element 0) gets the remainder. Every boundary is a multiple of comm.size(). A parameter may
// straddle two (or, with tiny buckets, several) buckets.
//
// One step:
//   begin_step()     arms the reducer; call it before the backward pass whose gradients are
//                    final (with gradient accumulation, the last micro-batch of the cycle).
//   mark_ready(p)    parameter p's gradient is final for this step; exactly once per step.
//                    Elements in gaps between parameters count as ready from the start.
//                    A bucket whose every parameter element is ready is startable, but buckets
//                    are STARTED strictly in bucket order (bucket k only after 0..k-1), because
//                    every rank must start collectives in the same order (MPI and NCCL both
//                    require it); a bucket that completes early waits for its predecessors.
//   finish()         starts every bucket not yet started, in order, then waits for all of them.
//                    Parameters never marked are treated as ready at this point, so a caller that
//                    does not mark at all (or skips frozen parameters) still gets every element
//                    reduced; the trainer calls finish() after backward.
// Between begin_step() and finish() the buffer must not be written except for the gradients of
// parameters not yet marked (the started buckets are being reduced in place).
//
// What the buffer holds after finish():
//   Mode::all_reduce      every element is the SUM over ranks (all_reduce_async, sum, in place).
//   Mode::reduce_scatter  (ZeRO-1) only owned() holds sums: this rank's block of each bucket,
//                         reduced in place (reduce_scatter_async, out = this rank's block of
//                         the bucket). The rest of the buffer is unspecified (partial sums or
//                         this rank's own gradients). The optimizer updates only the owned()
//                         ranges of the master weights and Adam moments, then gather() spreads
//                         the updated values so every rank holds the whole buffer again.
//
// No averaging: the caller normalises the loss by the GLOBAL token count (summed over the data-
// parallel ranks), so each rank's gradient is already its share and the plain sum is the
// gradient of the global mean loss.
//
// The class only uses Communicator calls, so it runs on host memory (MpiCommunicator,
// SelfCommunicator) and on device memory (NcclCommunicator) alike. With an MPI communicator in
// caller-progress mode (MPI_THREAD_FUNNELED) collectives move only inside test()/wait(); the
// reducer tests the oldest bucket in flight on every mark_ready() (and poll()), which is what
// keeps them moving during backward there.
//
// Errors (tfm::Error, thrown before anything is started, identically on every rank when the
// calls are the same): a buffer that is not f32/f64, on another device than the communicator,
// empty, or whose size is not a multiple of comm.size(); parameters outside the buffer, not in
// increasing order or overlapping; a non-positive bucket size; mark_ready() before begin_step()
// (or after finish()), with an unknown index, or twice in one step; begin_step() while a step is
// in progress; gather() in all_reduce mode, during a step, or on a buffer of another size.
//
// Not thread-safe: one thread calls every method (the one running backward). Destroying the
// reducer waits for the buckets already started; destroying it mid-step (say, unwinding from an
// exception) leaves the rest unstarted, so peers that do start them end at the deadline.
#pragma once
#include <chrono>
#include <cstdint>
#include <vector>

#include "comm/communicator.h"

namespace tfm::comm {

// A range of elements of a flat buffer: [offset, offset + numel).
struct ElementRange {
  int64_t offset = 0;
  int64_t numel = 0;
  int64_t end() const { return offset + numel; }
  bool operator==(const ElementRange& o) const { return offset == o.offset && numel == o.numel; }
};
// One parameter's gradient inside the flat buffer.
using ParamRange = ElementRange;

class GradientReducer {
 public:
  enum class Mode { all_reduce, reduce_scatter /* ZeRO-1 */ };

  // `flat_grads` (any shape; taken as flat) must stay alive, at the same address, as long as the
  // reducer. `params` in registration order. `bucket_bytes` > 0: the target bucket size.
  GradientReducer(Communicator& comm, const Tensor& flat_grads, std::vector<ParamRange> params,
                  int64_t bucket_bytes, Mode mode);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // ---- one step (see the header comment) ----
  void begin_step();
  void mark_ready(int param);
  void finish();
  // Tests the buckets in flight, oldest first, without blocking (drives MPI's progress in caller
  // mode); returns how many of this step's buckets have completed so far.
  int poll();
  bool in_step() const { return in_step_; }  // between begin_step() and finish()

  // The element ranges that hold fully reduced sums on this rank after finish(), sorted by
  // offset: {0, numel} in all_reduce mode, this rank's block of every bucket in reduce_scatter
  // mode. Fixed at construction.
  const std::vector<ElementRange>& owned() const { return owned_; }

  // reduce_scatter mode, outside a step: all-gathers every bucket's blocks of `flat_values` (a
  // buffer laid out like the gradients, any dtype, same element count, on the communicator's
  // device) in place, so every rank's owned() ranges reach every other rank. All buckets are
  // started, then all waited for.
  void gather(const Tensor& flat_values);

  // ---- layout and statistics ----
  Mode mode() const { return mode_; }
  int num_params() const { return int(params_.size()); }
  int64_t numel() const { return numel_; }
  int num_buckets() const { return int(buckets_.size()); }
  // Bucket ranges in bucket (start) order: bucket 0 ends at numel(), offsets decrease.
  const std::vector<ElementRange>& bucket_ranges() const { return buckets_; }
  int64_t bucket_elements() const { return bucket_elems_; }  // the target, before the remainder
  // Buckets started / completed in the current (or last) step. Started counts rise during
  // backward as parameters are marked: that is the overlap.
  int buckets_started() const { return next_to_start_; }
  int buckets_completed() const { return completed_; }
  // Seconds finish() spent waiting for collectives in the last step (the communication that
  // backward did not hide), and from begin_step() to the end of finish().
  double last_exposed_seconds() const { return last_exposed_s_; }
  double last_step_seconds() const { return last_step_s_; }
  // Bytes handed to the reducing collectives per step (the whole buffer in either mode).
  int64_t bytes_per_step() const { return numel_ * int64_t(dtype_size(grads_.dtype)); }

 private:
  using Clock = std::chrono::steady_clock;
  void start_ready_buckets();  // starts buckets in order while the next one is ready
  void start_bucket(int k);
  Tensor bucket_view(const Tensor& flat, int k) const;

  Communicator& comm_;
  Tensor grads_;  // 1-D view of the whole buffer
  std::vector<ParamRange> params_;
  Mode mode_;
  int64_t numel_ = 0;
  int64_t bucket_elems_ = 0;
  std::vector<ElementRange> buckets_;
  std::vector<ElementRange> owned_;
  // params_[p] overlaps buckets [first_bucket_[p], last_bucket_[p]] (first > last: none).
  std::vector<int> first_bucket_, last_bucket_;
  std::vector<int> params_per_bucket_;  // parameters overlapping each bucket

  // Per-step state.
  bool in_step_ = false;
  std::vector<char> marked_;       // [param]
  std::vector<int> unready_;       // [bucket] parameters overlapping it not yet marked
  std::vector<Request> requests_;  // [bucket]
  int next_to_start_ = 0;
  int completed_ = 0;
  Clock::time_point step_start_{};
  double last_exposed_s_ = 0;
  double last_step_s_ = 0;
};

const char* reducer_mode_name(GradientReducer::Mode m);  // "all_reduce", "reduce_scatter"

}  // namespace tfm::comm
