// Context: where an op runs. Ops take it first; it names the backend, the stream and the arena
// for scratch memory. Precision is carried by the tensors, not the context.
#pragma once
#include "kernels/core/arena.h"
#include "kernels/core/tensor.h"

namespace tfm {

struct Context {
  Device device = Device::cpu;
  void* stream = nullptr;       // cudaStream_t when device == cuda
  Arena* workspace = nullptr;   // scratch for ops that need it (may be null on CPU)
  int cpu_threads = 0;          // 0: OpenMP's default
};

// Every op checks its tensors live where its context runs.
inline void expect_device(const Context& ctx, const Tensor& t, const char* op, const char* arg) {
  TFM_CHECK(!t.defined() || t.device == ctx.device, op, ": ", arg, " is on ",
            device_name(t.device), " but the context runs on ", device_name(ctx.device));
}

// The dispatcher's answer for an op whose CUDA twin does not exist yet in this build.
[[noreturn]] inline void no_cuda_twin(const char* op) {
  fail(cat(op, ": no CUDA twin in this build; run with --device cpu"));
}

}  // namespace tfm
