// CUDA emulation: between the block scheduler (engine.cpp) and the runtime API (runtime.cpp).
#pragma once
#include "cuda_runtime.h"

namespace tfm_emu {
// A launch that failed: printed to stderr at once (the report names the block and thread) and
// returned by the next cudaGetLastError / synchronisation, like an asynchronous CUDA error.
void record_launch_error(cudaError_t err, const char* message);
}  // namespace tfm_emu
