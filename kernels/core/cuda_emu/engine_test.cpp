// Tests of the CPU CUDA emulator itself: barriers, warp collectives, the tensor-core fragment
// layouts of the PTX ISA, and the faults it must report instead of hanging or computing garbage.
#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace {

using tfm_emu::launch_kernel;

__global__ void rotate_through_shared(const int* in, int* out) {
  __shared__ int tile[256];
  const int t = int(threadIdx.x);
  tile[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();  // without it, threads would read neighbours not yet written
  out[blockIdx.x * blockDim.x + t] = tile[(t + 1) % int(blockDim.x)];
}

TEST(CudaEmulator, SyncthreadsOrdersSharedMemoryWithinEachBlock) {
  std::vector<int> in(3 * 256), out(in.size(), -1);
  for (size_t i = 0; i < in.size(); ++i) in[i] = int(i * 7 + 1);
  launch_kernel(rotate_through_shared, dim3(3), dim3(256), 0, in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 256; ++t) EXPECT_EQ(out[b * 256 + t], in[b * 256 + (t + 1) % 256]);
}

__global__ void warp_sums(const float* in, float* out) {
  float v = in[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const float from_lane_3 = __shfl_sync(0xffffffffu, in[threadIdx.x], 3);
  out[threadIdx.x] = v + 1000.f * from_lane_3;
}

TEST(CudaEmulator, ShufflesExchangeWithinAWarp) {
  std::vector<float> in(64), out(64);
  for (int i = 0; i < 64; ++i) in[size_t(i)] = float(i);
  launch_kernel(warp_sums, dim3(1), dim3(64), 0, in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int i = 0; i < 64; ++i) {
    const int w = i / 32;
    const float sum = float(32 * 32 * w + 31 * 32 / 2);
    EXPECT_EQ(out[size_t(i)], sum + 1000.f * float(32 * w + 3)) << i;
  }
}

__global__ void shuffle_after_lane_exit(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

TEST(CudaEmulator, ReportsAShuffleWhoseMaskNamesAnExitedLane) {
  std::vector<float> out(32);
  testing::internal::CaptureStderr();
  launch_kernel(shuffle_after_lane_exit, dim3(1), dim3(32), 0, out.data());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(err.find("exited"), std::string::npos) << err;
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the error is reported once";
}

__global__ void mismatched_barriers(float* out) {
  // Lane 0 waits in a warp collective for lanes that wait at __syncthreads for lane 0: a GPU
  // would hang.
  if (threadIdx.x == 0) {
    out[0] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
  } else {
    __syncthreads();
  }
}

TEST(CudaEmulator, ReportsADeadlockInsteadOfHanging) {
  std::vector<float> out(1);
  testing::internal::CaptureStderr();
  launch_kernel(mismatched_barriers, dim3(1), dim3(32), 0, out.data());
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_NE(err.find("deadlock"), std::string::npos) << err;
}

__global__ void touch_dynamic_smem(int* out) {
  unsigned char* smem = tfm_emu::dynamic_smem();
  out[0] = smem[0];
}

TEST(CudaEmulator, EnforcesLaunchLimitsLikeTheDevice) {
  int out = 0;
  testing::internal::CaptureStderr();
  launch_kernel(touch_dynamic_smem, dim3(1), dim3(2048), 0, &out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  launch_kernel(touch_dynamic_smem, dim3(1), dim3(32), 64 << 10, &out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue) << "64 KiB needs the opt-in attribute";
  testing::internal::GetCapturedStderr();
  ASSERT_EQ(cudaFuncSetAttribute(touch_dynamic_smem, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 64 << 10),
            cudaSuccess);
  launch_kernel(touch_dynamic_smem, dim3(1), dim3(32), 64 << 10, &out);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out, 0xff) << "dynamic shared memory starts poisoned";
}

// One warp: D = A·B + C with A 16×16 and B 16×8 loaded through ldmatrix (A row-major, B from a
// [n][k] tile without .trans and from a [k][n] tile with .trans), fragments placed as the PTX
// ISA's tables for mma.m16n8k16 say (g = lane/4, t = lane%4).
template <class T>
__global__ void mma_tile(const T* a_rows, const T* b_nk, const T* b_kn, const float* c_in,
                         float* d_nk, float* d_kn) {
  struct alignas(16) Tiles {
    T a[16 * 16], bn[8 * 16], bk[16 * 8];
  };
  __shared__ Tiles tiles;
  T *sa = tiles.a, *sbn = tiles.bn, *sbk = tiles.bk;
  const int lane = int(threadIdx.x);
  for (int i = lane; i < 256; i += 32) sa[i] = a_rows[i];
  for (int i = lane; i < 128; i += 32) sbn[i] = b_nk[i], sbk[i] = b_kn[i];
  __syncwarp();
  uint32_t a[4], bn[4], bk[4];
  // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
  tfm_emu::ldmatrix_x4(a, &sa[(lane % 16) * 16 + (lane / 16) * 8], false);
  // B from [n][k]: matrices (n 0-7, k 0-7), (n 0-7, k 8-15); lanes 16-31 repeat them.
  tfm_emu::ldmatrix_x4(bn, &sbn[(lane % 8) * 16 + ((lane / 8) % 2) * 8], false);
  // B from [k][n] (8 columns): matrices (k 0-7), (k 8-15), transposed.
  tfm_emu::ldmatrix_x4(bk, &sbk[(lane % 16) * 8], true);
  const int g = lane / 4, t = lane % 4;
  float c1[4] = {c_in[g * 8 + 2 * t], c_in[g * 8 + 2 * t + 1], c_in[(g + 8) * 8 + 2 * t],
                 c_in[(g + 8) * 8 + 2 * t + 1]};
  float c2[4] = {c1[0], c1[1], c1[2], c1[3]};
  const bool bf = std::is_same_v<T, __nv_bfloat16>;
  tfm_emu::mma_m16n8k16(c1, a, bn[0], bn[1], bf);
  tfm_emu::mma_m16n8k16(c2, a, bk[0], bk[1], bf);
  const int idx[4] = {g * 8 + 2 * t, g * 8 + 2 * t + 1, (g + 8) * 8 + 2 * t,
                      (g + 8) * 8 + 2 * t + 1};
  for (int i = 0; i < 4; ++i) d_nk[idx[i]] = c1[i], d_kn[idx[i]] = c2[i];
}

template <class T>
void check_mma() {
  std::vector<T> a(256), bnk(128), bkn(128);
  std::vector<float> af(256), bf(128), c(128), d1(128), d2(128);
  for (int i = 0; i < 256; ++i) a[size_t(i)] = T(float((i * 37) % 17 - 8) / 4), af[size_t(i)] = float(a[size_t(i)]);
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 8; ++n) {
      const T v = T(float((k * 11 + n * 5) % 13 - 6) / 2);
      bnk[size_t(n * 16 + k)] = v, bkn[size_t(k * 8 + n)] = v, bf[size_t(k * 8 + n)] = float(v);
    }
  for (int i = 0; i < 128; ++i) c[size_t(i)] = float(i % 9) - 4;
  launch_kernel(mma_tile<T>, dim3(1), dim3(32), 0, a.data(), bnk.data(), bkn.data(), c.data(),
                d1.data(), d2.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      float want = c[size_t(r * 8 + n)];
      for (int k = 0; k < 16; ++k) want += af[size_t(r * 16 + k)] * bf[size_t(k * 8 + n)];
      EXPECT_EQ(d1[size_t(r * 8 + n)], want) << r << "," << n;  // small integers/4: exact
      EXPECT_EQ(d2[size_t(r * 8 + n)], want) << r << "," << n;
    }
}

TEST(CudaEmulator, MmaAndLdmatrixFollowThePtxFragmentLayouts) {
  check_mma<__nv_bfloat16>();
  check_mma<__half>();
}

TEST(CudaEmulator, SixteenBitConversionsRoundToNearestEven) {
  EXPECT_EQ(float(__nv_bfloat16(1.00390625f)), 1.0f);      // halfway, even below
  EXPECT_EQ(float(__nv_bfloat16(1.01171875f)), 1.015625f);  // halfway, even above
  EXPECT_EQ(float(__half(65520.f)), INFINITY);
  EXPECT_EQ(float(__half(5.9604645e-8f)), 5.9604645e-8f);  // the smallest subnormal
  EXPECT_EQ(float(__half(2.9802322e-8f)), 0.f);            // half of it: ties to even (0)
}

}  // namespace
