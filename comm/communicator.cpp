#include "comm/communicator.h"

#include <cstdint>

namespace tfm::comm {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "?";
}

std::string GroupInfo::describe() const {
  std::string s = name + " group {";
  const int n = size();
  auto item = [&](int i) { return std::to_string(world_ranks[size_t(i)]); };
  if (n <= 16) {
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + item(i);
    return s + "}";
  }
  for (int i = 0; i < 4; ++i) s += item(i) + ", ";
  return s + "..., " + item(n - 2) + ", " + item(n - 1) + "} (" + std::to_string(n) + " ranks)";
}

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    if (op_) op_->wait();
    op_ = std::move(other.op_);
  }
  return *this;
}

Request::~Request() {
  if (op_) op_->wait();
}

void Request::wait() {
  if (!op_) return;
  op_->wait();
  op_.reset();
}

bool Request::test() {
  if (!op_) return true;
  if (!op_->test()) return false;
  op_.reset();
  return true;
}

void Request::wait_stream(void* stream) {
  if (!op_) return;
  op_->wait_stream(stream);
  op_.reset();
}

namespace detail {

namespace {
uintptr_t begin_of(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data); }
uintptr_t end_of(const Tensor& t) { return begin_of(t) + t.bytes(); }
bool overlaps(const Tensor& a, const Tensor& b) {
  return a.bytes() && b.bytes() && begin_of(a) < end_of(b) && begin_of(b) < end_of(a);
}
std::string where(const Communicator& c) {
  return cat(" on ", c.group().describe(), " (", c.backend(), ", rank ", c.rank(), ")");
}
}  // namespace

std::string describe_op(const char* op, const Tensor& t, const char* extra) {
  return cat(op, "(", extra ? extra : "", extra ? ", " : "", dtype_name(t.dtype), " x ", t.numel(),
             ")");
}

void check_tensor(const Communicator& c, const char* op, const char* arg, const Tensor& t) {
  TFM_CHECK(t.numel() == 0 || t.data != nullptr, op, where(c), ": ", arg, " has no data (",
            t.numel(), " elements)");
  TFM_CHECK(t.device == c.device(), op, where(c), ": ", arg, " is in ", device_name(t.device),
            " memory but this communicator works on ", device_name(c.device()), " memory");
}

Overlap check_reduce_scatter(const Communicator& c, const Tensor& in, const Tensor& out) {
  const char* op = "reduce_scatter";
  check_tensor(c, op, "in", in);
  check_tensor(c, op, "out", out);
  TFM_CHECK(in.dtype == out.dtype, op, where(c), ": in is ", dtype_name(in.dtype), " but out is ",
            dtype_name(out.dtype));
  TFM_CHECK(in.numel() == out.numel() * c.size(), op, where(c), ": in has ", in.numel(),
            " elements, expected size x out = ", c.size(), " x ", out.numel());
  if (!overlaps(in, out)) return Overlap::none;
  TFM_CHECK(begin_of(out) == begin_of(in) + size_t(c.rank()) * out.bytes(), op, where(c),
            ": out overlaps in without being this rank's block of it (in place means out = in + ",
            "rank x ", out.numel(), " elements)");
  return Overlap::in_place;
}

Overlap check_all_gather(const Communicator& c, const Tensor& in, const Tensor& out) {
  const char* op = "all_gather";
  check_tensor(c, op, "in", in);
  check_tensor(c, op, "out", out);
  TFM_CHECK(in.dtype == out.dtype, op, where(c), ": in is ", dtype_name(in.dtype), " but out is ",
            dtype_name(out.dtype));
  TFM_CHECK(out.numel() == in.numel() * c.size(), op, where(c), ": out has ", out.numel(),
            " elements, expected size x in = ", c.size(), " x ", in.numel());
  if (!overlaps(in, out)) return Overlap::none;
  TFM_CHECK(begin_of(in) == begin_of(out) + size_t(c.rank()) * in.bytes(), op, where(c),
            ": in overlaps out without being this rank's block of it (in place means in = out + ",
            "rank x ", in.numel(), " elements)");
  return Overlap::in_place;
}

void check_root(const Communicator& c, const char* op, int root) {
  TFM_CHECK(root >= 0 && root < c.size(), op, where(c), ": root ", root,
            " is not a rank of the group (0..", c.size() - 1, ")");
}

}  // namespace detail

}  // namespace tfm::comm
