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

namespace tfm {

enum class Init { zeros, ones, xavier_uniform, normal_scaled };  // normal_scaled: N(0, d^-1/2)

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;  // logical (unsharded) shape
  int64_t offset = 0;          // elements into the flat buffer
  int64_t numel = 0;
  Init init = Init::zeros;
};

class ParameterStore {
 public:
  // Registers a parameter; returns its index. Only before allocate().
  int add(const std::string& name, std::vector<int64_t> shape, Init init);
  // Allocates the flat value and gradient buffers (zeroed) in `dtype` (f32 master weights; f64
  // for gradient checks).
  void allocate(DType dtype, Device device = Device::cpu);
  // Fills every parameter from its Init rule, deterministically from (seed, name): the values do
  // not depend on registration order or on how many parameters exist.
  void initialize(uint64_t seed);

  bool allocated() const { return values_.tensor().defined(); }
  size_t size() const { return params_.size(); }
  int64_t total_numel() const { return total_; }
  const std::vector<ParamInfo>& params() const { return params_; }
  const ParamInfo& info(int i) const { return params_.at(size_t(i)); }
  int index(const std::string& name) const;  // throws naming the parameter if unknown
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }

  Tensor value(int i) const { return view(values_, i); }
  Tensor grad(int i) const { return view(grads_, i); }
  // `count` consecutive parameters of equal shape [r, c] as one [count·r, c] tensor (fused
  // projections); checks they are adjacent.
  Tensor fused_value(int first, int count) const { return fused(values_, first, count); }
  Tensor fused_grad(int first, int count) const { return fused(grads_, first, count); }

  const Tensor& values() const { return values_.tensor(); }  // [total] flat
  const Tensor& grads() const { return grads_.tensor(); }
  DType dtype() const { return values_.tensor().dtype; }

 private:
  Tensor view(const Buffer& flat, int i) const;
  Tensor fused(const Buffer& flat, int first, int count) const;

  std::vector<ParamInfo> params_;
  std::unordered_map<std::string, int> by_name_;
  int64_t total_ = 0;
  Buffer values_, grads_;
};

}  // namespace tfm
