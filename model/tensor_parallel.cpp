#include "model/tensor_parallel.h"

#include "comm/communicator.h"
#include "kernels/core/check.h"

namespace tfm {

void check_tensor_parallel(const ModelConfig& cfg, int tp) {
  TFM_CHECK(tp >= 1, "--tp must be at least 1, got ", tp);
  if (tp == 1) return;
  TFM_CHECK(cfg.heads % tp == 0, "--tp ", tp, ": the ", cfg.heads, " attention heads (--heads) do "
            "not divide evenly over ", tp, " tensor-parallel ranks");
  TFM_CHECK(cfg.d_ff % tp == 0, "--tp ", tp, ": --d-ff ", cfg.d_ff, " does not divide evenly over ",
            tp, " tensor-parallel ranks");
  TFM_CHECK(cfg.vocab_size % tp == 0, "--tp ", tp, ": the vocabulary of ", cfg.vocab_size,
            " tokens does not divide evenly over ", tp, " tensor-parallel ranks (prepare the data "
            "with a --vocab-size that is a multiple of ", tp, ")");
}

namespace {
comm::Communicator& group_of(const TensorParallel& tp) {
  TFM_CHECK(tp.group != nullptr, "tensor parallelism over ", tp.size, " ranks without a communicator");
  return *tp.group;
}
}  // namespace

void copy_to_tp_region_backward(const TensorParallel& tp, const Tensor& dx) {
  if (tp.active()) group_of(tp).all_reduce(dx);
}

void reduce_from_tp_region_forward(const TensorParallel& tp, const Tensor& y) {
  if (tp.active()) group_of(tp).all_reduce(y);
}

void all_gather_tp(const TensorParallel& tp, const Tensor& in, const Tensor& out) {
  TFM_CHECK(out.numel() == in.numel() * tp.size, "all_gather_tp: out holds ", out.numel(),
            " elements, expected ", tp.size, " x ", in.numel());
  group_of(tp).all_gather(in, out);
}

}  // namespace tfm
