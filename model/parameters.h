// ParameterStore: every parameter of the model as a named view into one flat master buffer,
// with a gradient buffer of the same layout. Names and logical shapes follow PyTorch's
// conventions (DESIGN.md), so a checkpoint maps 1:1 onto a PyTorch module; the flat order is
// the registration order, which the layers choose so that related tensors are adjacent
// (Q, K, V projections form one [3·D, D] matrix) and gradient buckets fill in backward order.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/core/buffer.h"
#include "kernels/core/context.h"

namespace tfm {

enum class Init { zeros, ones, xavier_uniform, normal_scaled };  // normal_scaled: N(0, d^-1/2)

// How a parameter is laid out over the tensor-parallel group (model/tensor_parallel.h):
//   replicated  every rank holds all of it (layer norms, biases of row-parallel layers)
//   rows        dim 0 split: rank r holds rows [r·n/tp, (r+1)·n/tp) (column-parallel weights and
//               their biases, the vocabulary of an embedding)
//   cols        dim 1 split: rank r holds columns [r·n/tp, …) (row-parallel weights)
enum class Split { replicated, rows, cols };

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;        // logical (unsharded) shape: what checkpoints hold
  std::vector<int64_t> local_shape;  // this rank's part of it: what the buffers hold
  Split split = Split::replicated;
  int64_t split_first = 0;           // first row (rows) or column (cols) of this rank's part
  int64_t offset = 0;                // elements into the flat buffer
  int64_t numel = 0;                 // local elements
  Init init = Init::zeros;
  bool sharded() const { return split != Split::replicated; }
};

class ParameterStore {
 public:
  // tp_rank of tp_size: which part of every split parameter this store holds.
  explicit ParameterStore(int tp_rank = 0, int tp_size = 1);

  // Registers a parameter with its logical shape; returns its index. Only before allocate().
  // A split dimension must divide by the TP size (the model checks its options first, so this
  // is an internal error naming the parameter).
  int add(const std::string& name, std::vector<int64_t> shape, Init init,
          Split split = Split::replicated);
  // Allocates the flat value and gradient buffers (zeroed) in `dtype` (f32 master weights; f64
  // for gradient checks). pad_multiple rounds the buffers' length up to a multiple of it (the
  // data-parallel reducer splits them evenly over the DP ranks); the padding is never a
  // parameter and stays zero. compute: the dtype the layers compute in; when it differs from
  // `dtype` (bf16/f16 on the GPU) a working copy of the weights in that dtype is kept beside the
  // master (mixed precision: DESIGN.md, Trainer); gradients stay in the master dtype.
  void allocate(DType dtype, Device device = Device::cpu, int64_t pad_multiple = 1,
                DType compute = DType::f32);
  // Fills every parameter from its Init rule, deterministically from (seed, name): the values do
  // not depend on registration order, on how many parameters exist, nor on the TP layout (each
  // rank draws the logical tensor and keeps its part).
  void initialize(uint64_t seed);

  bool allocated() const { return values_.tensor().defined(); }
  size_t size() const { return params_.size(); }
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  int64_t total_numel() const { return total_; }  // local elements of all parameters (no padding)
  int64_t flat_numel() const { return values_.tensor().numel(); }  // the buffers' length
  const std::vector<ParamInfo>& params() const { return params_; }
  const ParamInfo& info(int i) const { return params_.at(size_t(i)); }
  int index(const std::string& name) const;  // throws naming the parameter if unknown
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }

  // Parameter i's local part, shaped local_shape, in the compute dtype: what the layers use (the
  // working copy under mixed precision, else the master itself).
  Tensor value(int i) const { return view(working(), i); }
  Tensor master(int i) const { return view(values_, i); }  // the master dtype's
  Tensor grad(int i) const { return view(grads_, i); }
  // `count` consecutive parameters of equal shape [r, c] as one [count·r, c] tensor (fused
  // projections); checks they are adjacent.
  Tensor fused_value(int first, int count) const { return fused(working(), first, count); }
  Tensor fused_grad(int first, int count) const { return fused(grads_, first, count); }

  const Tensor& values() const { return values_.tensor(); }  // [total] flat master weights
  const Tensor& grads() const { return grads_.tensor(); }
  // The flat buffer value() views: the working copy, or the master when there is none.
  const Buffer& working() const { return working_.tensor().defined() ? working_ : values_; }
  bool has_working_copy() const { return working_.tensor().defined(); }
  // Rounds the master weights into the working copy (after initialisation or loading; the
  // optimiser writes it during its update). No-op without one.
  void refresh_working_copy(const Context& ctx);
  DType dtype() const { return values_.tensor().dtype; }           // master dtype
  DType compute_dtype() const { return working().tensor().dtype; }
  Device device() const { return values_.tensor().device; }

 private:
  Tensor view(const Buffer& flat, int i) const;
  Tensor fused(const Buffer& flat, int first, int count) const;

  int tp_rank_ = 0, tp_size_ = 1;
  std::vector<ParamInfo> params_;
  std::unordered_map<std::string, int> by_name_;
  int64_t total_ = 0;
  Buffer values_, grads_, working_;
};

}  // namespace tfm
