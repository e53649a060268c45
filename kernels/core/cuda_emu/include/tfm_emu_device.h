// CUDA emulation (see kernels/core/cuda_emu/README.md): what CUDA device code sees, for g++.
//
// A launch runs its blocks one after another on the calling thread; the threads of a block are
// fibers switched cooperatively at every barrier (__syncthreads, and the warp-wide collectives:
// shuffles, __syncwarp, ldmatrix, mma). So barriers have their real meaning — a thread that
// reads shared memory written by another without a barrier between reads stale data here, as
// it may on the device — and a barrier that not every thread reaches is reported (it would
// hang the GPU), as is a warp collective whose mask names a lane that has exited.
#pragma once
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "vector_types.h"

// ---- qualifiers --------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Static shared memory: one instance per emulating OS thread, i.e. per running block.
#define __shared__ static thread_local

// ---- built-in variables (set by the scheduler for the running fiber) ---------------------------
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace tfm_emu {

// ---- the scheduler's entry points (engine.cpp) ---------------------------------------------------
void block_barrier();                                  // __syncthreads
// Warp collective: this lane deposits `in` (at most 64 bytes), waits for every lane of `mask`
// to arrive at the same collective `op`, and returns the slots of all 32 lanes (valid until
// the warp's next-but-one collective).
const unsigned char* warp_collective(unsigned mask, const char* op, const void* in, size_t bytes);
unsigned char* dynamic_smem();                         // extern __shared__ storage of the block
[[noreturn]] void device_fault(const char* what);      // reports and abandons the launch
constexpr size_t kSlotBytes = 64;

using ThreadBody = void (*)(void* closure);
void run_grid(dim3 grid, dim3 block, size_t dynamic_smem_bytes, const void* kernel,
              ThreadBody body, void* closure);

// Launch: the arguments are converted to the kernel's parameter types once (as the runtime
// copies them into the parameter buffer); every thread then gets its own copy, as on the GPU.
template <class... P, class... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  struct Closure {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> params;
  } closure{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  run_grid(grid, block, smem, reinterpret_cast<const void*>(kernel), [](void* c) {
    auto* cl = static_cast<Closure*>(c);
    std::tuple<std::decay_t<P>...> mine = cl->params;
    std::apply(cl->kernel, mine);
  }, &closure);
}

// ---- tensor-core fragments (PTX ISA: ldmatrix; mma.m16n8k16 with .row.col, f32 accumulate) ----
// Four 8×8 matrices of 16-bit elements; lanes 8i..8i+7 give the row addresses of matrix i (16
// bytes each, 16-byte aligned). Lane l receives in r[i] the elements (row l/4, columns 2(l%4),
// 2(l%4)+1) of matrix i — or, with trans, of its transpose — the lower column in the low half.
void ldmatrix_x4(uint32_t (&r)[4], const void* row_address, bool trans);
// d = a·b + c for A 16×16 (row), B 16×8 (col), C/D 16×8 f32, fragments per the PTX ISA
// ("Matrix Fragments for mma.m16n8k16"); bf16 when is_bf16, else f16.
void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool is_bf16);

template <class T>
T shuffle(unsigned mask, T v, int src_of_lane_xor_or_index, int width, int mode, const char* op) {
  static_assert(sizeof(T) <= kSlotBytes && std::is_trivially_copyable_v<T>);
  const unsigned char* slots = warp_collective(mask, op, &v, sizeof(T));
  const int lane = int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31;
  const int seg = lane & ~(width - 1);
  int src;
  if (mode == 0) {  // xor
    src = lane ^ src_of_lane_xor_or_index;
    if (src >= seg + width) src = lane;
  } else if (mode == 1) {  // indexed
    src = seg + (src_of_lane_xor_or_index & (width - 1));
  } else {  // down
    src = lane + src_of_lane_xor_or_index;
    if (src >= seg + width) src = lane;
  }
  if (!(mask >> src & 1u)) device_fault("shuffle reads a lane outside its mask");
  T out;
  std::memcpy(&out, slots + size_t(src) * kSlotBytes, sizeof(T));
  return out;
}

}  // namespace tfm_emu

// ---- intrinsics --------------------------------------------------------------------------------
inline void __syncthreads() { tfm_emu::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  tfm_emu::warp_collective(mask, "__syncwarp", nullptr, 0);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return tfm_emu::shuffle(mask, v, lane_mask, width, 0, "__shfl_xor_sync");
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  return tfm_emu::shuffle(mask, v, src_lane, width, 1, "__shfl_sync");
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return tfm_emu::shuffle(mask, v, int(delta), width, 2, "__shfl_down_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  const int p = pred != 0;
  const unsigned char* slots = tfm_emu::warp_collective(mask, "__ballot_sync", &p, sizeof p);
  unsigned out = 0;
  for (int l = 0; l < 32; ++l) {
    int v;
    std::memcpy(&v, slots + size_t(l) * tfm_emu::kSlotBytes, sizeof v);
    if ((mask >> l & 1u) && v) out |= 1u << l;
  }
  return out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
template <class T> inline T __ldg(const T* p) { return *p; }

// CUDA's global min/max overloads for device code.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

// Atomics: blocks may one day run on several OS threads, so these are real atomics.
template <class T> inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <class T> inline T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <class T> inline T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v > old && !a.compare_exchange_weak(old, v)) {}
  return old;
}
template <class T> inline T atomicExch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }
template <class T> inline T atomicCAS(T* p, T expected, T desired) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
  return expected;
}
