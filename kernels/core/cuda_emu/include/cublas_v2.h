// CUDA emulation (see kernels/core/cuda_emu/README.md): cuBLAS's cublas_v2.h — the v2 API of
// cublas_api.h under its unsuffixed names, as the real header maps them.
#pragma once
#include "cublas_api.h"

#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
#define cublasGetStream cublasGetStream_v2
#define cublasGetPointerMode cublasGetPointerMode_v2
#define cublasSetPointerMode cublasSetPointerMode_v2
