// Shared pieces of the CUDA twins (.cu files only): error checks that throw tfm::Error, the
// stream and scratch memory of a Context, run-time dtype dispatch onto device element types,
// float conversions, 16-byte packs for vectorised access, warp reductions and grid sizing.
//
// Storage dtypes on the GPU: f32, bf16 (__nv_bfloat16) and f16 (__half); all arithmetic in fp32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "kernels/core/context.h"

namespace tfm::cuda {

// Throws tfm::Error naming the call and CUDA's message.
inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) fail(cat(what, ": ", cudaGetErrorString(err)));
}
// After every kernel launch: a bad configuration is reported here, at the op that made it.
inline void check_launch(const char* op) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) fail(cat(op, ": kernel launch failed: ", cudaGetErrorString(err)));
}

inline cudaStream_t stream_of(const Context& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// Launches `kernel` on `stream`: kernel<<<grid, block, smem, stream>>>(args...). Written as a
// call so that the CUDA-emulation build (TFM_CUDA_EMULATION, kernels/core/cuda_emu/README.md)
// can run the same source on the CPU engine instead.
template <class... P, class... A>
inline void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, A&&... args) {
#if TFM_CUDA_EMULATION
  (void)stream;
  tfm_emu::launch_kernel(kernel, grid, block, smem, std::forward<A>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
#endif
}

// The block's dynamic shared memory (the launch's `smem` bytes), 16-byte aligned.
#if TFM_CUDA_EMULATION
#define TFM_DYNAMIC_SMEM(name) unsigned char* name = ::tfm_emu::dynamic_smem()
#else
#define TFM_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Scratch device memory for one op call, from the context's arena (step-scoped; work on the
// same stream is ordered, so the next op may reuse it safely).
inline void* scratch(const Context& ctx, size_t bytes, const char* op) {
  TFM_CHECK(ctx.workspace != nullptr && ctx.workspace->device() == Device::cuda, op,
            ": needs a device workspace arena in the context (Context::workspace on cuda)");
  return ctx.workspace->alloc_bytes(bytes);
}

// Multiprocessor count of the current device (cached per device).
int sm_count();

// Grid size for a grid-stride loop over `work` items with `threads` per block: enough blocks to
// fill the device a few times over, never more than needed, at least one.
inline unsigned grid_for(int64_t work, int threads, int blocks_per_sm = 8) {
  int64_t need = (work + threads - 1) / threads;
  int64_t cap = int64_t(sm_count()) * blocks_per_sm;
  int64_t g = need < cap ? need : cap;
  return unsigned(g < 1 ? 1 : g);
}

// ---- element types ---------------------------------------------------------------------------

template <class T> struct Tag { using type = T; };

// Calls f(Tag<T>{}) with T the device type of a GPU floating dtype (f32, bf16, f16).
template <class F>
void dispatch_gpu_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(Tag<float>{}); return;
    case DType::bf16: f(Tag<__nv_bfloat16>{}); return;
    case DType::f16: f(Tag<__half>{}); return;
    default: fail(cat(op, ": the CUDA twin runs f32, bf16 or f16, got ", dtype_name(t)));
  }
}

inline bool is_gpu_float(DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; }

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <class T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}

// ---- 16-byte packs ---------------------------------------------------------------------------

// kPack<T> elements of T in 16 bytes: 4 floats or 8 bf16/f16.
template <class T> constexpr int kPack = int(16 / sizeof(T));

template <class T>
struct alignas(16) Pack {
  T v[kPack<T>];
};

template <class T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) {  // p 16-byte aligned
  Pack<T> out;
  *reinterpret_cast<int4*>(&out) = *reinterpret_cast<const int4*>(p);
  return out;
}
template <class T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& in) {  // p 16-byte aligned
  *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&in);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// ---- reductions ------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets the
// result. `shared` holds 32 values. The order is fixed, so the result is deterministic.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : A(0);
  return warp_sum(v);
}

}  // namespace tfm::cuda
