#include "comm/gradient_reducer.h"

#include <algorithm>
#include <utility>

namespace tfm::comm {

const char* reducer_mode_name(GradientReducer::Mode m) {
  return m == GradientReducer::Mode::all_reduce ? "all_reduce" : "reduce_scatter";
}

namespace {
// Every message names the reducer's group, so a failure on one rank of many is placeable.
std::string where(const Communicator& c) {
  return cat(" (gradient reducer on ", c.group().describe(), ")");
}
}  // namespace

GradientReducer::GradientReducer(Communicator& comm, const Tensor& flat_grads,
                                 std::vector<ParamRange> params, int64_t bucket_bytes, Mode mode)
    : comm_(comm), params_(std::move(params)), mode_(mode) {
  const int64_t n = comm.size();
  numel_ = flat_grads.numel();
  TFM_CHECK(flat_grads.dtype == DType::f32 || flat_grads.dtype == DType::f64,
            "gradient buffer is ", dtype_name(flat_grads.dtype), ", expected f32 or f64",
            where(comm));
  TFM_CHECK(flat_grads.device == comm.device(), "gradient buffer is in ",
            device_name(flat_grads.device), " memory, but the ", comm.backend(),
            " communicator reduces ", device_name(comm.device()), " memory", where(comm));
  TFM_CHECK(numel_ > 0 && flat_grads.defined(), "gradient buffer is empty", where(comm));
  TFM_CHECK(numel_ % n == 0, "gradient buffer has ", numel_,
            " elements, not a multiple of the group size ", n, ": pad it to ",
            (numel_ + n - 1) / n * n, " elements", where(comm));
  TFM_CHECK(bucket_bytes > 0, "bucket size must be positive, got ", bucket_bytes, " bytes",
            where(comm));
  grads_ = flat_grads.view({numel_});

  int64_t prev_end = 0;
  for (size_t p = 0; p < params_.size(); ++p) {
    const ParamRange& r = params_[p];
    TFM_CHECK(r.offset >= 0 && r.numel >= 0 && r.end() <= numel_, "parameter ", p,
              " covers elements [", r.offset, ", ", r.end(), "), outside the gradient buffer [0, ",
              numel_, ")", where(comm));
    TFM_CHECK(r.offset >= prev_end, "parameter ", p, " starts at element ", r.offset,
              ", before the end (", prev_end, ") of the parameter registered before it: ",
              "parameters must be in increasing order and must not overlap", where(comm));
    prev_end = r.end();
  }

  // Buckets from the end: a multiple of n elements each, so every boundary (numel_ − j·size)
  // stays a multiple of n; the target rounded to the nearest such size, at least n.
  const int64_t esize = int64_t(dtype_size(grads_.dtype));
  const int64_t target = bucket_bytes / esize;
  bucket_elems_ = std::max<int64_t>(1, (target + n / 2) / n) * n;
  for (int64_t end = numel_; end > 0;) {
    const int64_t begin = std::max<int64_t>(0, end - bucket_elems_);
    buckets_.push_back({begin, end - begin});
    end = begin;
  }
  const int nb = int(buckets_.size());

  // Bucket k covers [numel_ − (k+1)·size, numel_ − k·size) (clamped at 0), so the bucket of an
  // element e is (numel_ − 1 − e) / size.
  auto bucket_of = [&](int64_t e) { return int((numel_ - 1 - e) / bucket_elems_); };
  first_bucket_.assign(params_.size(), 0);
  last_bucket_.assign(params_.size(), -1);
  params_per_bucket_.assign(size_t(nb), 0);
  for (size_t p = 0; p < params_.size(); ++p) {
    const ParamRange& r = params_[p];
    if (r.numel == 0) continue;  // no elements: in no bucket, marking it changes nothing
    first_bucket_[p] = bucket_of(r.end() - 1);  // its last element is in the earliest bucket
    last_bucket_[p] = bucket_of(r.offset);
    for (int k = first_bucket_[p]; k <= last_bucket_[p]; ++k) ++params_per_bucket_[size_t(k)];
  }

  if (mode_ == Mode::all_reduce) {
    owned_.push_back({0, numel_});
  } else {
    for (int k = nb - 1; k >= 0; --k) {  // from the start of the buffer: sorted by offset
      const int64_t block = buckets_[size_t(k)].numel / n;
      owned_.push_back({buckets_[size_t(k)].offset + comm.rank() * block, block});
    }
  }

  marked_.assign(params_.size(), 0);
  unready_.assign(size_t(nb), 0);
  requests_.resize(size_t(nb));
}

// The Requests' destructors wait for whatever was started: the buffer may be freed right after.
GradientReducer::~GradientReducer() = default;

Tensor GradientReducer::bucket_view(const Tensor& flat, int k) const {
  const ElementRange& b = buckets_[size_t(k)];
  return flat.rows(b.offset, b.numel);
}

void GradientReducer::begin_step() {
  TFM_CHECK(!in_step_, "begin_step() called while a step is in progress: call finish() first",
            where(comm_));
  in_step_ = true;
  std::fill(marked_.begin(), marked_.end(), 0);
  unready_ = params_per_bucket_;
  next_to_start_ = 0;
  completed_ = 0;
  step_start_ = Clock::now();
  // Buckets made of gaps only are ready now; starting them here keeps the order rule simple.
  start_ready_buckets();
}

void GradientReducer::mark_ready(int param) {
  TFM_CHECK(in_step_, "mark_ready(", param,
            ") called outside a step: call begin_step() before the backward pass", where(comm_));
  TFM_CHECK(param >= 0 && param < int(params_.size()), "mark_ready(", param,
            "): unknown parameter; there are ", params_.size(), where(comm_));
  TFM_CHECK(!marked_[size_t(param)], "mark_ready(", param, "): parameter ", param,
            " was already marked ready in this step", where(comm_));
  marked_[size_t(param)] = 1;
  for (int k = first_bucket_[size_t(param)]; k <= last_bucket_[size_t(param)]; ++k)
    --unready_[size_t(k)];
  start_ready_buckets();
  poll();
}

void GradientReducer::start_ready_buckets() {
  while (next_to_start_ < num_buckets() && unready_[size_t(next_to_start_)] == 0)
    start_bucket(next_to_start_++);
}

void GradientReducer::start_bucket(int k) {
  Tensor b = bucket_view(grads_, k);
  if (mode_ == Mode::all_reduce) {
    requests_[size_t(k)] = comm_.all_reduce_async(b, ReduceOp::sum);
  } else {
    const int64_t block = b.numel() / comm_.size();
    requests_[size_t(k)] = comm_.reduce_scatter_async(b, b.rows(comm_.rank() * block, block),
                                                      ReduceOp::sum);
  }
}

int GradientReducer::poll() {
  // Collectives on one communicator complete in start order, so only the oldest one in flight
  // needs testing; this keeps a poll per mark_ready() O(1).
  while (completed_ < next_to_start_ && requests_[size_t(completed_)].test()) ++completed_;
  return completed_;
}

void GradientReducer::finish() {
  TFM_CHECK(in_step_, "finish() called outside a step: call begin_step() first", where(comm_));
  // Parameters never marked count as ready now.
  while (next_to_start_ < num_buckets()) start_bucket(next_to_start_++);
  const Clock::time_point wait_start = Clock::now();
  for (int k = completed_; k < num_buckets(); ++k) requests_[size_t(k)].wait();
  completed_ = num_buckets();
  const Clock::time_point end = Clock::now();
  last_exposed_s_ = std::chrono::duration<double>(end - wait_start).count();
  last_step_s_ = std::chrono::duration<double>(end - step_start_).count();
  in_step_ = false;
}

void GradientReducer::gather(const Tensor& flat_values) {
  TFM_CHECK(mode_ == Mode::reduce_scatter,
            "gather() is for reduce_scatter (ZeRO-1) mode; in all_reduce mode every rank already "
            "holds the whole buffer",
            where(comm_));
  TFM_CHECK(!in_step_, "gather() called during a step: call finish() first", where(comm_));
  TFM_CHECK(flat_values.numel() == numel_, "gather(): buffer has ", flat_values.numel(),
            " elements, the gradient layout has ", numel_, where(comm_));
  Tensor flat = flat_values.view({numel_});
  // Started in bucket order on every rank; all in flight at once, then waited for.
  std::vector<Request> reqs;
  reqs.reserve(buckets_.size());
  for (int k = 0; k < num_buckets(); ++k) {
    Tensor b = bucket_view(flat, k);
    const int64_t block = b.numel() / comm_.size();
    reqs.push_back(comm_.all_gather_async(b.rows(comm_.rank() * block, block), b));
  }
  for (Request& r : reqs) r.wait();
}

}  // namespace tfm::comm
