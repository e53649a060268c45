#include "comm/self_communicator.h"

#include <cstring>

#include "comm/abort.h"
#if defined(TFM_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

namespace tfm::comm {

SelfCommunicator::SelfCommunicator(std::string name, int world_rank, Device device,
                                   CommOptions options)
    : device_(device),
      timeout_(options.timeout_seconds > 0 ? options.timeout_seconds
                                           : detail::default_timeout_seconds()),
      stream_(options.compute_stream) {
  group_.name = std::move(name);
  group_.rank = 0;
  group_.world_ranks = {world_rank};
}

void SelfCommunicator::copy(const Tensor& dst, const Tensor& src) {
  if (dst.data == src.data || src.bytes() == 0) return;
  if (device_ == Device::cpu) {
    std::memcpy(dst.data, src.data, src.bytes());
    return;
  }
#if defined(TFM_HAVE_CUDA)
  cudaError_t err = cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDeviceToDevice,
                                    static_cast<cudaStream_t>(stream_));
  TFM_CHECK(err == cudaSuccess, "self communicator (", group_.describe(), "): device copy of ",
            src.bytes(), " bytes failed: ", cudaGetErrorString(err));
#else
  fail(cat("self communicator (", group_.describe(), "): cuda tensors need a build with CUDA"));
#endif
}

Request SelfCommunicator::all_reduce_async(const Tensor& inout, ReduceOp) {
  detail::check_tensor(*this, "all_reduce", "inout", inout);
  return Request();
}

Request SelfCommunicator::reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp) {
  detail::check_reduce_scatter(*this, in, out);
  copy(out, in);
  return Request();
}

Request SelfCommunicator::all_gather_async(const Tensor& in, const Tensor& out) {
  detail::check_all_gather(*this, in, out);
  copy(out, in);
  return Request();
}

Request SelfCommunicator::broadcast_async(const Tensor& inout, int root) {
  detail::check_tensor(*this, "broadcast", "inout", inout);
  detail::check_root(*this, "broadcast", root);
  return Request();
}

Request SelfCommunicator::barrier_async() { return Request(); }

}  // namespace tfm::comm
