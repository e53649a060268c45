#include "trainer/sharding.h"

#include <cstring>
#include <vector>

#include "comm/communicator.h"
#include "kernels/core/check.h"

namespace tfm {

namespace {

void check_same_model(const ParameterStore& local, const ParameterStore& logical) {
  TFM_CHECK(local.size() == logical.size(), "sharding: the stores hold ", local.size(), " and ",
            logical.size(), " parameters");
  for (size_t i = 0; i < local.size(); ++i) {
    const ParamInfo& a = local.info(int(i));
    const ParamInfo& b = logical.info(int(i));
    TFM_CHECK(a.name == b.name && a.shape == b.shape, "sharding: parameter ", i, " is ", a.name,
              " in one store and ", b.name, " in the other");
  }
}

// Copies between the part rank `r` holds of parameter p (at `part`, laid out as p.local_shape)
// and the logical tensor (at `whole`, laid out as p.shape), elements of `elem` bytes.
void copy_part(const ParamInfo& p, int r, char* part, char* whole, size_t elem, bool to_whole) {
  const int64_t rows = p.shape.empty() ? 1 : p.shape[0];
  const int64_t cols = p.shape.size() > 1 ? p.shape[1] : 1;
  const int64_t local_rows = p.local_shape.empty() ? 1 : p.local_shape[0];
  const int64_t local_cols = p.local_shape.size() > 1 ? p.local_shape[1] : 1;
  auto move = [&](char* dst, char* src, int64_t n) { std::memcpy(dst, src, size_t(n) * elem); };
  switch (p.split) {
    case Split::replicated:
      to_whole ? move(whole, part, p.numel) : move(part, whole, p.numel);
      break;
    case Split::rows: {  // a contiguous block of whole rows
      char* w = whole + size_t(int64_t(r) * local_rows * cols) * elem;
      to_whole ? move(w, part, p.numel) : move(part, w, p.numel);
      break;
    }
    case Split::cols:  // a column block of every row
      for (int64_t row = 0; row < rows; ++row) {
        char* w = whole + size_t(row * cols + int64_t(r) * local_cols) * elem;
        char* s = part + size_t(row * local_cols) * elem;
        to_whole ? move(w, s, local_cols) : move(s, w, local_cols);
      }
      break;
  }
}

}  // namespace

void gather_logical(const ParameterStore& local, const Tensor& local_flat, comm::Communicator* tp,
                    const ParameterStore& logical, const Tensor& logical_flat) {
  check_same_model(local, logical);
  TFM_CHECK(local_flat.device == Device::cpu && logical_flat.device == Device::cpu,
            "gather_logical: host buffers only");
  TFM_CHECK(local_flat.dtype == logical_flat.dtype, "gather_logical: dtypes differ");
  TFM_CHECK(logical_flat.numel() >= logical.total_numel(), "gather_logical: the logical buffer "
            "holds ", logical_flat.numel(), " elements, the model ", logical.total_numel());
  const int k = tp ? tp->size() : 1;
  TFM_CHECK(k == local.tp_size(), "gather_logical: the store is split ", local.tp_size(),
            " ways, the group has ", k, " ranks");
  const size_t elem = dtype_size(local_flat.dtype);
  const Tensor flat = local_flat.view({local_flat.numel()});
  // Every rank's whole buffer: the layouts are identical but for which part each holds.
  std::vector<char> staging;
  const char* parts = static_cast<const char*>(flat.data);
  if (k > 1) {
    staging.resize(size_t(k) * flat.bytes());
    Tensor all(staging.data(), flat.dtype, Device::cpu, {int64_t(k) * flat.numel()});
    tp->all_gather(flat, all);
    parts = staging.data();
  }
  char* whole = static_cast<char*>(logical_flat.data);
  for (size_t i = 0; i < local.size(); ++i) {
    const ParamInfo& p = local.info(int(i));
    const ParamInfo& q = logical.info(int(i));
    for (int r = 0; r < (p.sharded() ? k : 1); ++r) {
      char* part = const_cast<char*>(parts) + (size_t(r) * size_t(flat.numel()) + size_t(p.offset)) * elem;
      copy_part(p, r, part, whole + size_t(q.offset) * elem, elem, /*to_whole=*/true);
    }
  }
}

void scatter_logical(const ParameterStore& logical, const Tensor& logical_flat,
                     const ParameterStore& local, const Tensor& local_flat) {
  check_same_model(local, logical);
  TFM_CHECK(local_flat.device == Device::cpu && logical_flat.device == Device::cpu,
            "scatter_logical: host buffers only");
  TFM_CHECK(local_flat.dtype == logical_flat.dtype, "scatter_logical: dtypes differ");
  const size_t elem = dtype_size(local_flat.dtype);
  char* whole = static_cast<char*>(logical_flat.data);
  char* mine = static_cast<char*>(local_flat.data);
  for (size_t i = 0; i < local.size(); ++i) {
    const ParamInfo& p = local.info(int(i));
    const ParamInfo& q = logical.info(int(i));
    copy_part(p, local.tp_rank(), mine + size_t(p.offset) * elem, whole + size_t(q.offset) * elem,
              elem, /*to_whole=*/false);
  }
}

}  // namespace tfm
